import Foundation

/// A device's recent packets, bounded by bytes and by seconds of capture time.
/// Eviction takes whole GOPs from the front, so the ring always starts at a keyframe and anything
/// decoding from it can begin at its head.
struct PacketRing {
  struct Limits: Sendable {
    var maxBytes: Int
    var maxSeconds: Double
  }

  let limits: Limits
  private(set) var packets: [StoredPacket] = []
  private var head = 0
  private(set) var byteCount = 0

  init(limits: Limits) { self.limits = limits }

  var count: Int { packets.count - head }
  var isEmpty: Bool { count == 0 }
  var first: StoredPacket? { isEmpty ? nil : packets[head] }
  var last: StoredPacket? { isEmpty ? nil : packets[packets.count - 1] }

  mutating func append(_ packet: StoredPacket) {
    // A ring that would start with a P-frame is useless to a decoder: wait for a keyframe.
    if isEmpty && !packet.isKeyframe { return }
    if packet.isKeyframe { packLastGOP() }
    packets.append(packet)
    byteCount += packet.data.count
    evictWhileOverLimits()
  }

  /// The newest `limit` packets' count and capture-time span: the current frame rate, unaffected by
  /// gaps between sessions further back in the ring.
  func recentSpan(limit: Int) -> (count: Int, spanMs: Int64) {
    guard let last else { return (0, 0) }
    let start = max(head, packets.count - limit)
    return (packets.count - start, last.timestampMs - packets[start].timestampMs)
  }

  /// What a replay of [fromMs, toMs] needs: from the keyframe at or before `fromMs` (the ring's start if
  /// `fromMs` is before it) to the last packet at or before `toMs`. Empty when nothing lies in the range.
  func replay(fromMs: Int64, toMs: Int64) -> ArraySlice<StoredPacket> {
    let live = packets[head...]
    guard let end = live.lastIndex(where: { $0.timestampMs <= toMs }),
      live.contains(where: { $0.timestampMs >= fromMs && $0.timestampMs <= toMs })
    else { return [] }
    let start = live[...end].lastIndex(where: { $0.isKeyframe && $0.timestampMs <= fromMs }) ?? head
    return packets[start...end]
  }

  /// Packets with `index > after`, oldest first.
  func packets(after index: UInt64) -> ArraySlice<StoredPacket> {
    guard let position = position(firstIndexAbove: index) else { return [] }
    return packets[position...]
  }

  /// The newest keyframe's position, as a slice from it to the end (what a decoder joining live needs).
  func fromNewestKeyframe() -> ArraySlice<StoredPacket> {
    guard let position = packets[head...].lastIndex(where: \.isKeyframe) else { return [] }
    return packets[position...]
  }

  private func position(firstIndexAbove index: UInt64) -> Int? {
    // Indices are increasing: binary search.
    var low = head
    var high = packets.count
    while low < high {
      let middle = (low + high) / 2
      if packets[middle].index <= index { low = middle + 1 } else { high = middle }
    }
    return low < packets.count ? low : nil
  }

  private mutating func evictWhileOverLimits() {
    while count > 1 && isOverLimits {
      dropFirstGOP()
    }
    // Compact once the evicted slots outnumber the live ones (and 64): each live slot moves at most
    // once per eviction of as many, and the array holds at most max(2 x live, live + 64) slots (up to
    // 2,048, ~180 KB, per camera when the floor was 1,024). Its capacity stays at its peak.
    if head > 64 && head * 2 > packets.count {
      packets.removeFirst(head)
      head = 0
    }
  }

  /// Copies the packets of the GOP a keyframe closes into one block of exactly their size: the
  /// allocator's size classes and partly used slabs then cost nothing on them while they wait in the ring.
  private mutating func packLastGOP() {
    guard let start = packets[head...].lastIndex(where: \.isKeyframe), packets.count - start >= 2 else { return }
    let total = packets[start...].reduce(0) { $0 + $1.data.count }
    guard total > 0, total <= GOPBlock.maxBytes, let block = GOPBlock(byteCount: total) else { return }
    var offset = 0
    for position in start..<packets.count {
      let data = packets[position].data
      guard !data.isEmpty else { continue }
      data.withUnsafeBytes { (block.base + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      packets[position].data = Data(
        bytesNoCopy: block.base + offset, count: data.count, deallocator: .custom { _, _ in withExtendedLifetime(block) {} })
      offset += data.count
    }
  }

  private var isOverLimits: Bool {
    guard let first, let last else { return false }
    return byteCount > limits.maxBytes || Double(last.timestampMs - first.timestampMs) / 1000 > limits.maxSeconds
  }

  /// Drops the first packet and everything up to (not including) the next keyframe.
  private mutating func dropFirstGOP() {
    repeat {
      byteCount -= packets[head].data.count
      packets[head] = packets[head].emptied()
      head += 1
    } while head < packets.count && !packets[head].isKeyframe
  }
}

extension StoredPacket {
  /// The same entry without its bytes, so evicted slots free their memory before compaction.
  fileprivate func emptied() -> StoredPacket {
    var copy = self
    copy.data = .init()
    return copy
  }
}
