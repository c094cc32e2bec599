// swift-tools-version:6.0
// Swift types shared with Lichen's TypeScript side (generated from packages/schema by tools/codegen),
// and the SQL contract (LichenSQL) for a native Notification Service Extension that reads the same
// SQLite DB and speaks the same IPC. Foundation only; Swift 6 language mode (strict Sendable checks).
import PackageDescription

let package = Package(
    name: "LichenSchema",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "LichenSchema", targets: ["LichenSchema"]),
    ],
    targets: [
        .target(name: "LichenSchema", path: "Sources/LichenSchema"),
        .testTarget(
            name: "LichenSchemaTests",
            dependencies: ["LichenSchema"],
            path: "Tests/LichenSchemaTests",
            resources: [.copy("Resources/vectors.json")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
