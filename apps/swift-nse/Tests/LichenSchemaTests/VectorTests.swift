import Foundation
import XCTest
@testable import LichenSchema

/// Every shared test vector (schemas/vectors, copied by `npm run codegen`), decoded AND encoded:
/// valid ones must decode, encode to the same JSON, and decode again to an equal value; invalid ones
/// marked "rejects" must fail to decode; "schema-only" ones are only caught by JSON Schema (extra
/// properties, ranges, unknown discriminators), and must still round-trip unchanged when they decode.
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

    /// decode -> encode -> decode; returns the encoding.
    func roundTrip<T: Codable & Equatable>(_ type: T.Type, _ data: Data, _ label: String) throws -> Data {
        let first = try JSONDecoder().decode(T.self, from: data)
        let encoded = try JSONEncoder().encode(first)
        let second = try JSONDecoder().decode(T.self, from: encoded)
        XCTAssertEqual(first, second, "\(label): decode(encode(x)) != x")
        return encoded
    }

    func roundTrip(_ vector: Vector) throws -> Data {
        let data = Data(vector.json.utf8)
        let label = "\(vector.type)/\(vector.name)"
        switch vector.type {
        case "handler-descriptor": return try roundTrip(HandlerDescriptor.self, data, label)
        case "account-state": return try roundTrip(AccountState.self, data, label)
        case "ipc-message": return try roundTrip(IPCMessage.self, data, label)
        case "process-lock-record": return try roundTrip(ProcessLockRecord.self, data, label)
        case "share-outbox-item": return try roundTrip(ShareOutboxItem.self, data, label)
        case "notification-content": return try roundTrip(NotificationContent.self, data, label)
        case "push-registration": return try roundTrip(PushRegistration.self, data, label)
        default:
            XCTFail("no Swift type for \(vector.type)")
            return Data()
        }
    }

    func jsonObject(_ data: Data) throws -> NSObject {
        try XCTUnwrap(JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as? NSObject)
    }

    func testEveryVectorDecodesAndEncodes() throws {
        let vectors = try loadVectors()
        XCTAssertGreaterThan(vectors.count, 0)
        for vector in vectors {
            let label = "\(vector.type)/\(vector.name)"
            switch vector.swift {
            case "decodes":
                let encoded = try roundTrip(vector)
                // Encoding writes exactly what was decoded: every key (nulls of required fields and
                // union tags included), nothing more.
                XCTAssertEqual(try jsonObject(encoded), try jsonObject(Data(vector.json.utf8)), label)
            case "rejects":
                XCTAssertThrowsError(try roundTrip(vector), "\(label) should be rejected")
            default:
                // schema-only: Codable may accept it; if it does, it must still round-trip.
                _ = try? roundTrip(vector)
            }
        }
    }

    func testUnionEncodeAlwaysWritesTheDiscriminator() throws {
        let ping = IPCMessage.ping(PingMessage(
            data: PingMessageData(nonce: "n1"), v: 1, id: "1", source: .main, destination: .nse,
            createdAt: 1, expiresAt: 2))
        let object = try XCTUnwrap(try jsonObject(JSONEncoder().encode(ping)) as? [String: Any])
        XCTAssertEqual(object["type"] as? String, "ping")
        XCTAssertEqual(try JSONDecoder().decode(IPCMessage.self, from: JSONEncoder().encode(ping)), ping)

        let share = ShareContent.geo(GeoShare(latitude: 48.2, longitude: 16.37))
        let shareObject = try XCTUnwrap(try jsonObject(JSONEncoder().encode(share)) as? [String: Any])
        XCTAssertEqual(shareObject["kind"] as? String, "geo")
    }

    func testUnknownVariantKeepsTheWholePayload() throws {
        let future = #"{"type":"teleport","v":1,"data":{"to":"moon","n":[1,2.5,null,true]}}"#
        let message = try JSONDecoder().decode(IPCMessage.self, from: Data(future.utf8))
        guard case .unknown = message else { return XCTFail("an unknown type must decode as .unknown") }
        XCTAssertEqual(message.tag, "teleport")
        XCTAssertEqual(try jsonObject(JSONEncoder().encode(message)), try jsonObject(Data(future.utf8)))
    }

    func testRequiredNullableFieldsEncodeNullAndMustBePresent() throws {
        let vectors = try loadVectors()
        let fresh = try XCTUnwrap(vectors.first { $0.type == "account-state" && $0.name == "fresh" })
        let state = try JSONDecoder().decode(AccountState.self, from: Data(fresh.json.utf8))
        XCTAssertNil(state.sm.streamID)
        let sm = try XCTUnwrap((try jsonObject(JSONEncoder().encode(state)) as? [String: Any])?["sm"] as? [String: Any])
        XCTAssertTrue(sm["streamId"] is NSNull, "a required nullable field is written as null")
    }

    func testUnknownPlainEnumValueThrows() {
        XCTAssertThrowsError(try JSONDecoder().decode(ProcessRole.self, from: Data(#""watch""#.utf8)))
        XCTAssertEqual(try JSONDecoder().decode(IPCDestination.self, from: Data(#""*""#.utf8)), .broadcast)
    }

    func testSQLContractParametersMatchPlaceholders() {
        XCTAssertFalse(LichenSQL.all.isEmpty)
        for (name, statement) in LichenSQL.all {
            let placeholders = statement.sql.filter { $0 == "?" }.count
            XCTAssertEqual(placeholders, statement.parameters.count, name)
        }
    }
}
