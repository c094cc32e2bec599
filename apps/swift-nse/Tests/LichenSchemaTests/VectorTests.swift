import Foundation
import XCTest
@testable import LichenSchema

/// Decodes every shared test vector (schemas/vectors, copied by `npm run codegen`): valid ones must
/// decode; invalid ones marked "rejects" must fail; "schema-only" ones are only caught by JSON Schema
/// (extra properties, ranges, unknown discriminators that decode to `.unknown`).
final class VectorTests: XCTestCase {
    struct Vector: Decodable {
        let type: String
        let name: String
        let valid: Bool
        let swift: String
        let json: String
    }

    func loadVectors() throws -> [Vector] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "vectors", withExtension: "json"))
        return try JSONDecoder().decode([Vector].self, from: Data(contentsOf: url))
    }

    func decode(_ vector: Vector) throws {
        let data = Data(vector.json.utf8)
        let decoder = JSONDecoder()
        switch vector.type {
        case "HandlerDescriptor": _ = try decoder.decode(HandlerDescriptor.self, from: data)
        case "AccountState": _ = try decoder.decode(AccountState.self, from: data)
        case "IpcMessage": _ = try decoder.decode(IPCMessage.self, from: data)
        case "ProcessLockRecord": _ = try decoder.decode(ProcessLockRecord.self, from: data)
        case "ShareOutboxItem": _ = try decoder.decode(ShareOutboxItem.self, from: data)
        case "NotificationContent": _ = try decoder.decode(NotificationContent.self, from: data)
        case "PushRegistration": _ = try decoder.decode(PushRegistration.self, from: data)
        default: XCTFail("no Swift type for \(vector.type)")
        }
    }

    func testEveryVector() throws {
        let vectors = try loadVectors()
        XCTAssertGreaterThan(vectors.count, 0)
        for vector in vectors {
            switch vector.swift {
            case "decodes":
                XCTAssertNoThrow(try decode(vector), "\(vector.type)/\(vector.name) should decode")
            case "rejects":
                XCTAssertThrowsError(try decode(vector), "\(vector.type)/\(vector.name) should be rejected")
            default:
                break // schema-only: JSON Schema validation rejects it, Codable cannot see it
            }
        }
    }

    func testIpcUnionKeepsVariantsAndToleratesUnknownTypes() throws {
        let ping = #"{"v":1,"id":"1","type":"ping","source":"main","destination":"nse","createdAt":1,"expiresAt":2,"data":{}}"#
        guard case .ping = try JSONDecoder().decode(IPCMessage.self, from: Data(ping.utf8)) else {
            return XCTFail("ping did not decode as .ping")
        }
        let future = #"{"type":"teleport","v":1}"#
        guard case .unknown("teleport") = try JSONDecoder().decode(IPCMessage.self, from: Data(future.utf8)) else {
            return XCTFail("an unknown type must decode as .unknown")
        }
    }
}
