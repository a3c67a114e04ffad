import Foundation
import RelayCore
import Testing

@testable import RelayServer

private let codec = CodecConfiguration(
  CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30)))

private func packet(_ index: UInt64, key: Bool, bytes: Int = 100, ms: Int64? = nil) -> StoredPacket {
  StoredPacket(
    index: index, sequence: index, data: Data(count: bytes), pts: Int64(index), dts: Int64(index), isKeyframe: key,
    timestampMs: ms ?? Int64(index) * 33, codec: codec)
}

@Suite struct PacketRingTests {
  @Test func waitsForAKeyframeBeforeStoring() {
    var ring = PacketRing(limits: .init(maxBytes: 10_000, maxSeconds: 60))
    ring.append(packet(1, key: false))
    ring.append(packet(2, key: false))
    #expect(ring.isEmpty)
    ring.append(packet(3, key: true))
    #expect(ring.first?.index == 3)
  }

  @Test func evictsWholeGOPsByBytes() {
    // GOPs of 3 packets of 100 bytes; room for 7 packets.
    var ring = PacketRing(limits: .init(maxBytes: 700, maxSeconds: 60))
    for i in UInt64(1)...9 { ring.append(packet(i, key: i % 3 == 1)) }
    #expect(ring.first?.isKeyframe == true)
    #expect(ring.first?.index == 4)
    #expect(ring.count == 6)
    #expect(ring.byteCount == 600)
  }

  @Test func evictedSlotsAreCompactedAway() {
    // 10 s of 30 fps, a keyframe every 60: ~300 live packets, evicted a GOP at a time.
    var ring = PacketRing(limits: .init(maxBytes: 1 << 30, maxSeconds: 10))
    var largestArray = 0
    for i in UInt64(1)...3_000 {
      ring.append(packet(i, key: i % 60 == 1))
      largestArray = max(largestArray, ring.packets.count)
      #expect(ring.packets.count <= max(2 * ring.count, ring.count + 65))
    }
    #expect(largestArray < 700, "the slot array stays near twice the live packets, not 2,048")
    #expect(ring.first?.isKeyframe == true && ring.last?.index == 3_000)
    #expect(ring.packets(after: 2_990).map(\.index) == Array(2_991...3_000))
  }

  @Test func aClosedGOPIsPackedIntoOneBlockWithItsBytesUnchanged() {
    var ring = PacketRing(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    func distinct(_ index: UInt64, key: Bool, bytes: Int) -> StoredPacket {
      var made = packet(index, key: key)
      made.data = Data((0..<bytes).map { UInt8(truncatingIfNeeded: Int(index) &* 31 &+ $0) })
      return made
    }
    let sizes = [5_000, 1_200, 0, 900, 3_333]
    let gop = sizes.enumerated().map { distinct(UInt64($0.offset + 1), key: $0.offset == 0, bytes: $0.element) }
    for stored in gop { ring.append(stored) }
    let loose = ring.packets.map { $0.data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } }
    ring.append(distinct(6, key: true, bytes: 700))  // closes the GOP

    let packed = Array(ring.packets[0..<5])
    #expect(packed.map(\.data) == gop.map(\.data), "packing changed some packet's bytes")
    let addresses = packed.filter { !$0.data.isEmpty }.map { $0.data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } }
    let sizesKept = packed.filter { !$0.data.isEmpty }.map { UInt($0.data.count) }
    for n in 1..<addresses.count {
      #expect(addresses[n] == addresses[n - 1] + sizesKept[n - 1], "packet \(n) does not follow the one before it")
    }
    #expect(addresses.first != loose.first, "the GOP still sits in its own allocations")
    #expect(ring.byteCount == sizes.reduce(0, +) + 700)

    // The open GOP (one keyframe) is not packed until a keyframe closes it; a lone keyframe never is.
    let lone = ring.packets[5].data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
    ring.append(distinct(7, key: true, bytes: 800))
    #expect(ring.packets[5].data == distinct(6, key: true, bytes: 700).data)
    #expect(ring.packets[5].data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == lone, "a lone keyframe was copied")
  }

  @Test func packedGOPsAreEvictedWholeAndTheirBytesOutliveTheRingWhileHeld() {
    var ring = PacketRing(limits: .init(maxBytes: 1_000, maxSeconds: 60))
    for i in UInt64(1)...4 { ring.append(packet(i, key: i == 1, bytes: 200)) }
    ring.append(packet(5, key: true, bytes: 200))  // packs 1...4
    let held = ring.packets[1].data  // a reader still holding a packet of the packed GOP
    for i in UInt64(6)...9 { ring.append(packet(i, key: i == 9, bytes: 200)) }  // evicts 1...4
    #expect(ring.first?.index == 5)
    #expect(held == Data(count: 200), "a held packet of an evicted, packed GOP must keep its bytes")
  }

  @Test func evictsBySeconds() {
    var ring = PacketRing(limits: .init(maxBytes: 1 << 30, maxSeconds: 1))
    for i in UInt64(1)...10 { ring.append(packet(i, key: i % 2 == 1, ms: Int64(i) * 300)) }
    let span = ring.last!.timestampMs - ring.first!.timestampMs
    #expect(span <= 1000)
    #expect(ring.first?.isKeyframe == true)
  }

  @Test func packetsAfterAnIndex() {
    var ring = PacketRing(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    for i in UInt64(1)...20 { ring.append(packet(i, key: i % 5 == 1)) }
    #expect(ring.packets(after: 17).map(\.index) == [18, 19, 20])
    #expect(ring.packets(after: 20).isEmpty)
    #expect(ring.packets(after: 0).count == 20)
    #expect(ring.fromNewestKeyframe().map(\.index) == [16, 17, 18, 19, 20])
  }

  @Test func replayStartsAtTheKeyframeAtOrBeforeTheRange() {
    var ring = PacketRing(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    // Keyframes at 1, 6, 11, 16; packet i at i * 33 ms.
    for i in UInt64(1)...20 { ring.append(packet(i, key: i % 5 == 1)) }
    #expect(ring.replay(fromMs: 8 * 33, toMs: 12 * 33).map(\.index) == Array(6...12))
    #expect(ring.replay(fromMs: 11 * 33, toMs: 11 * 33).map(\.index) == [11], "a keyframe starts itself")
    #expect(ring.replay(fromMs: 0, toMs: 3 * 33).map(\.index) == [1, 2, 3], "from before the ring: its start")
    #expect(ring.replay(fromMs: 21 * 33, toMs: 30 * 33).isEmpty, "nothing in the range")
    #expect(ring.replay(fromMs: 5 * 33 + 1, toMs: 5 * 33 + 20).isEmpty, "a range between two packets")
  }

  @Test func recentSpanIgnoresOlderGaps() {
    var ring = PacketRing(limits: .init(maxBytes: 1 << 20, maxSeconds: 600))
    for i in UInt64(1)...10 { ring.append(packet(i, key: i == 1, ms: Int64(i) * 33)) }
    // A 100 s pause (client restarted), then 30 fps again.
    for i in UInt64(11)...100 { ring.append(packet(i, key: i == 11, ms: 100_000 + Int64(i) * 33)) }
    let recent = ring.recentSpan(limit: 61)
    #expect(recent.count == 61)
    #expect(recent.spanMs == 60 * 33)
  }

  @Test func staysBoundedOverALongRun() {
    var ring = PacketRing(limits: .init(maxBytes: 5_000, maxSeconds: 60))
    for i in UInt64(1)...100_000 { ring.append(packet(i, key: i % 10 == 1)) }
    #expect(ring.byteCount <= 5_000)
    #expect(ring.last?.index == 100_000)
  }
}

@Suite struct ApproximateFrameRateTests {
  @Test func measuredFromTheBuffer() {
    #expect(ApproximateFrameRate.of(frames: 31, spanMs: 1000, nominal: 0) == 30)
  }

  @Test func neverZeroOrInfiniteWhenFramesExist() {
    #expect(ApproximateFrameRate.of(frames: 1, spanMs: 0, nominal: 0) == 1)
    #expect(ApproximateFrameRate.of(frames: 1, spanMs: 0, nominal: .infinity) == 1)
    #expect(ApproximateFrameRate.of(frames: 5, spanMs: 0, nominal: 25) == 25)
    #expect(ApproximateFrameRate.of(frames: 1000, spanMs: 1, nominal: 0) == 1000)
    #expect(ApproximateFrameRate.of(frames: 2, spanMs: 100_000, nominal: 0) == 1)
  }

  @Test func zeroWithoutFrames() {
    #expect(ApproximateFrameRate.of(frames: 0, spanMs: 0, nominal: 30) == 0)
  }
}
