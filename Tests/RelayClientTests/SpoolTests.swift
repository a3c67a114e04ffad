import Foundation
import Logging
import RelayCore
import Testing

@testable import RelayClient

private let h264 = CodecDescription(
  name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", extradata: Data([0, 0, 0, 1, 0x67]),
  timeBase: Rational(1, 90000), frameRate: 30)
private let device = try! DeviceID(validating: "cam1")

/// The n-th frame of a source with GOPs of 5: a keyframe every 5th, `bytes` bytes that say which frame it is.
private func packet(_ n: Int, bytes: Int = 100) -> EncodedPacket {
  EncodedPacket(
    data: Data((0..<bytes).map { UInt8(truncatingIfNeeded: n &+ $0) }), pts: Int64(n) * 3000, dts: Int64(n) * 3000,
    isKeyframe: (n - 1) % 5 == 0, captureTimeMs: 1_700_000_000_000 + Int64(n) * 33)
}

/// A fresh directory under the system's temporary one, removed by the caller.
private func temporaryDirectory() -> String {
  let path = NSTemporaryDirectory() + "spool-test-\(UUID().uuidString)"
  try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

private func openSpool(_ directory: String, maxBytes: Int = 64 << 20) throws -> Spool {
  try Spool(.init(directory: directory, maxBytes: maxBytes), device: device, logger: Logger(label: "spool-test"))
}

/// A queue on `spool` the way a publisher makes one, with `maxResidentBytes` of it in memory.
private func spooledQueue(_ spool: Spool, maxResidentBytes: Int = .max, retainsGOP: Bool = false) -> FrameQueue {
  FrameQueue(
    limits: .init(maxBytes: spool.configuration.maxBytes, maxSeconds: .infinity, maxResidentBytes: maxResidentBytes),
    retainsGOP: retainsGOP, journal: spool, restoring: spool.restored.queue)
}

/// What a stream sends from `queue`, each frame's bytes read back from the spool when they left memory.
private func sendAll(_ queue: inout FrameQueue, spool: Spool) throws -> [(UInt64, Data)] {
  var sent: [(UInt64, Data)] = []
  while case .frame(var entry, _) = queue.next(generation: queue.codecGeneration, window: 1000, maxInFlightBytes: 1 << 40, now: 1) {
    if entry.isPagedOut { entry.packet.data = try spool.read(entry.storedAt!) }
    sent.append((entry.sequence, entry.packet.data))
  }
  return sent
}

private func segmentFiles(_ directory: String) -> [String] {
  let path = (directory as NSString).appendingPathComponent(device.rawValue)
  return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    .map { (path as NSString).appendingPathComponent($0) }
}

@Suite struct SpoolRecordTests {
  @Test func everyRecordReadsBackAsWritten() {
    let records: [SpoolRecord] = [
      .header(.init(nextSequence: 42, acknowledgedThrough: 30, releasedBefore: 26), codecs: [0: h264, 3: h264]),
      .codec(generation: 1, h264),
      .frame(.init(sequence: 7, codecGeneration: 1, isKeyframe: true, pts: -5, dts: -6, captureTimeMs: 99, data: Data([1, 2, 3]))),
      .frame(.init(sequence: 8, codecGeneration: 1, isKeyframe: false, pts: 1, dts: 1, captureTimeMs: 100, data: Data())),
      .acknowledged(through: 12),
      .released(before: 9),
    ]
    for record in records {
      let bytes = record.encoded()
      #expect(SpoolRecord.decode(bytes) == .record(record, length: bytes.count))
      #expect(SpoolRecord.decode(bytes.dropLast()) == .incomplete)
    }
  }

  @Test func aFlippedBitIsDamageNotARecord() {
    var bytes = SpoolRecord.acknowledged(through: 12).encoded()
    bytes[bytes.count - 1] ^= 0x10
    guard case .damaged = SpoolRecord.decode(bytes) else { Issue.record("a changed record was taken"); return }
  }

  @Test func crc32IsTheZlibOne() {
    var crc = CRC32()
    crc.update(Data("123456789".utf8))
    #expect(crc.value == 0xCBF4_3926)
  }
}

@Suite struct SpoolTests {
  @Test func aKilledRunsUnacknowledgedFramesAreSentByTheNextInOrderWithTheSameSession() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let session: String
    do {
      let spool = try openSpool(directory)
      session = spool.sessionID
      var queue = spooledQueue(spool)
      queue.sourceOpened(h264)
      for n in 1...12 { queue.capture(packet(n)) }
      _ = queue.restart(after: 0)
      _ = queue.next(generation: 0, window: 100, maxInFlightBytes: 1 << 30, now: 1)
      _ = queue.acknowledge(upTo: 4)
      // No close: what a SIGKILL leaves (the records are in the page cache, not yet synced).
    }
    let spool = try openSpool(directory)
    #expect(spool.sessionID == session)
    #expect(spool.restored.queue.position.nextSequence == 13)
    #expect(spool.restored.queue.codecs == [0: h264])
    var queue = spooledQueue(spool)
    #expect(queue.restoredCount == 8)
    _ = queue.restart(after: 4)
    let sent = try sendAll(&queue, spool: spool)
    #expect(sent.map(\.0) == Array(5...12))
    #expect(sent.map(\.1) == (5...12).map { packet($0).data })
    queue.sourceOpened(h264)  // the camera opens again with the same codec: same generation
    queue.capture(packet(13))
    #expect(try sendAll(&queue, spool: spool).map(\.0) == [13])
    spool.close()
  }

  @Test func aTornLastRecordIsCutOffAndEverythingBeforeItKept() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
      let spool = try openSpool(directory)
      var queue = spooledQueue(spool)
      queue.sourceOpened(h264)
      for n in 1...6 { queue.capture(packet(n, bytes: 1000)) }
      spool.close()
    }
    let segment = try #require(segmentFiles(directory).last)
    let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
    #expect(truncate(segment, off_t(size - 300)) == 0)  // the last frame's write stopped part way
    let spool = try openSpool(directory)
    #expect(spool.restored.damagedBytes == 1000 + SpoolRecord.frameDataOffset - 300)
    #expect(spool.restored.queue.frames.map(\.sequence) == Array(1...5))
    #expect(spool.restored.queue.position.nextSequence == 6)
    var queue = spooledQueue(spool)
    _ = queue.restart(after: 0)
    #expect(try sendAll(&queue, spool: spool).map(\.1) == (1...5).map { packet($0, bytes: 1000).data })
    spool.close()
    // Opened once more, nothing is damaged: the torn bytes were cut from the file.
    let again = try openSpool(directory)
    #expect(again.restored.damagedBytes == 0)
    #expect(again.restored.queue.frames.map(\.sequence) == Array(1...5))
    again.close()
  }

  @Test func framesPastTheMemoryBoundLeaveMemoryAndAreReadBackWhenSent() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let spool = try openSpool(directory)
    var queue = spooledQueue(spool, maxResidentBytes: 2_500)
    queue.sourceOpened(h264)
    for n in 1...20 { queue.capture(packet(n, bytes: 1000)) }
    #expect(queue.outbox.residentBytes <= 2_500)
    #expect(queue.byteCount == 20_000)
    _ = queue.restart(after: 0)
    let sent = try sendAll(&queue, spool: spool)
    #expect(sent.map(\.0) == Array(1...20))
    #expect(sent.map(\.1) == (1...20).map { packet($0, bytes: 1000).data })
    spool.close()
  }

  @Test func segmentsAreDeletedOnceTheirFramesAreAcknowledged() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let spool = try openSpool(directory, maxBytes: 16 << 20)  // 1 MiB segments
    var queue = spooledQueue(spool)
    queue.sourceOpened(h264)
    _ = queue.restart(after: 0)
    for n in 1...40 { queue.capture(packet(n, bytes: 100_000)) }
    #expect(segmentFiles(directory).count >= 4)
    _ = try sendAll(&queue, spool: spool)
    _ = queue.acknowledge(upTo: 40)
    #expect(segmentFiles(directory).count == 1)
    spool.close()
    let again = try openSpool(directory, maxBytes: 16 << 20)
    #expect(again.restored.queue.frames.isEmpty)
    #expect(again.restored.queue.position.nextSequence == 41)  // never reused, even with nothing left
    again.close()
  }

  @Test func pastTheSpoolBoundWholeGOPsAreDroppedAndStayDroppedAfterARestart() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
      let spool = try openSpool(directory, maxBytes: 2 << 20)
      var queue = spooledQueue(spool)
      queue.sourceOpened(h264)
      for n in 1...30 { queue.capture(packet(n, bytes: 100_000)) }  // 3 MB into 2 MiB
      #expect(queue.droppedFrames == 10)
      #expect(queue.outbox.first?.sequence == 11)
    }
    let spool = try openSpool(directory, maxBytes: 2 << 20)
    #expect(spool.restored.queue.frames.map(\.sequence) == Array(11...30))
    spool.close()
  }

  @Test func theKeptGOPIsOfferedAgainAfterARestart() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
      let spool = try openSpool(directory)
      var queue = spooledQueue(spool, retainsGOP: true)
      queue.sourceOpened(h264)
      _ = queue.restart(after: 0)
      for n in 1...8 { queue.capture(packet(n)) }
      _ = try sendAll(&queue, spool: spool)
      _ = queue.acknowledge(upTo: 7)  // GOP 6…10 is current: 6 and 7 are acknowledged and kept
    }
    let spool = try openSpool(directory)
    var queue = spooledQueue(spool, retainsGOP: true)
    #expect(queue.restoredCount == 1)
    _ = queue.restart(after: 0)  // a new server: it gets the GOP again from its keyframe
    #expect(try sendAll(&queue, spool: spool).map(\.0) == [6, 7, 8])
    spool.close()
  }

  @Test func anUnwritableDirectoryIsAClearError() throws {
    #expect(throws: SpoolError.self) { try openSpool("/proc/framerelay-spool") }
  }
}
