import Foundation
import Logging
import Testing

@testable import Annotations

@Suite struct AnnotationOutboxTests {
  private func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "outbox-\(UUID().uuidString)"
    return path
  }

  @Test func storesInOrderDeduplicatesByIdAndSurvivesReopening() async throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outbox = AnnotationOutbox(directory: directory, logger: Logger(label: "test"))
    for number in 1...5 {
      try await outbox.add(id: "id-\(number)", device: "cam", request: Data([UInt8(number)]))
    }
    try await outbox.add(id: "id-3", device: "cam", request: Data([99]))  // a retry of id-3
    #expect(outbox.pendingCount == 5)
    let oldest = try await outbox.oldest(limit: 3)
    #expect(oldest.map(\.id) == ["id-1", "id-2", "id-3"])
    #expect(oldest.map(\.request) == [Data([1]), Data([2]), Data([3])])
    try await outbox.remove(oldest.prefix(2).map(\.seq))
    #expect(outbox.pendingCount == 3)

    // A second outbox on the same file (as after a restart) sees what was left.
    let reopened = AnnotationOutbox(directory: directory, logger: Logger(label: "test"))
    #expect(try await reopened.oldest(limit: 10).map(\.id) == ["id-3", "id-4", "id-5"])
    #expect(reopened.pendingCount == 3)
  }

  @Test func concurrentCallersAreAllStored() async throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outbox = AnnotationOutbox(directory: directory, logger: Logger(label: "test"))
    try await withThrowingTaskGroup(of: Void.self) { group in
      for number in 0..<400 {
        group.addTask { try await outbox.add(id: "id-\(number)", device: "cam-\(number % 4)", request: Data()) }
      }
      try await group.waitForAll()
    }
    #expect(outbox.pendingCount == 400)
    #expect(Set(try await outbox.oldest(limit: 1000).map(\.id)).count == 400)
  }

  @Test func aDirectoryThatCannotBeCreatedIsUnwritable() async throws {
    let file = temporaryDirectory()
    _ = FileManager.default.createFile(atPath: file, contents: Data("not a directory".utf8))
    defer { try? FileManager.default.removeItem(atPath: file) }
    let outbox = AnnotationOutbox(directory: file + "/data", logger: Logger(label: "test"))
    await #expect {
      try await outbox.add(id: "a", device: "cam", request: Data())
    } throws: { error in
      guard case .unwritable(let path, _) = error as? OutboxError else { return false }
      return path.hasPrefix(file)
    }
  }
}

@Suite struct RequestSignerTests {
  /// The test vector in docs/annotations-upstream.md (also checked by Tests/EndToEnd/upstreams.py).
  @Test func matchesTheDocumentedVector() {
    let headers = RequestSigner(secret: "s3cret").headers(body: Data(#"{"data":[]}"#.utf8), timestampMs: 1_700_000_000_000)
    #expect(headers[RequestSigner.timestampHeader] == "1700000000000")
    #expect(headers[RequestSigner.md5Header] == "e0234245cb00aa260ccfa99a9a0b235e")
    #expect(headers[RequestSigner.signatureHeader] == "ae41ed409b588ab2357de9611e8bf3908e7bacc59e534a661edd487a5d3645e7")
  }
}

@Suite struct HTTPUpstreamBodyTests {
  @Test func itemsAreProtoJSONWithProtoNamesAndTheId() throws {
    var request = AnnotateRequest()
    request.deviceName = "cam-1"
    request.type = "person"
    request.startTimestamp = 1_700_000_000_000
    request.objectBoudingBox.top = 10
    let entries = [
      OutboxEntry(seq: 1, id: "a\"1", device: "cam-1", createdMs: 0, request: try request.serializedBytes()),
      OutboxEntry(seq: 2, id: "b", device: "cam-1", createdMs: 0, request: Data()),
    ]
    let body = try HTTPUpstream.body(entries)
    let parsed = try JSONSerialization.jsonObject(with: body) as? [String: Any]
    let items = try #require(parsed?["data"] as? [[String: Any]])
    #expect(items.count == 2)
    #expect(items[0]["annotation_id"] as? String == "a\"1")
    #expect(items[0]["device_name"] as? String == "cam-1")
    #expect(items[0]["start_timestamp"] as? String == "1700000000000")
    #expect((items[0]["object_bouding_box"] as? [String: Any])?["top"] as? Int == 10)
    #expect(items[1].keys.sorted() == ["annotation_id"])
  }
}

@Suite struct UpstreamAddressTests {
  @Test func parsesEachKind() throws {
    #expect(try UpstreamAddress(parsing: "grpc://127.0.0.1:50001") == .grpc(host: "127.0.0.1", port: 50001, tls: false))
    #expect(try UpstreamAddress(parsing: "grpcs://cloud:443") == .grpc(host: "cloud", port: 443, tls: true))
    #expect(try UpstreamAddress(parsing: "http://127.0.0.1:8080/a") == .http(URL(string: "http://127.0.0.1:8080/a")!))
  }

  @Test(arguments: ["127.0.0.1:50001", "ftp://host/x", "grpc://host", "grpc://host:1/path"])
  func refusesOthers(_ text: String) {
    #expect(throws: UpstreamAddressError.self) { try UpstreamAddress(parsing: text) }
  }
}
