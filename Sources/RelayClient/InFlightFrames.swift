import Foundation
import RelayCore

/// Frames sent (or about to be) and not yet acknowledged, oldest first. They are what a reconnect
/// resends, so nothing captured is lost while the server is away.
struct InFlightFrames {
  struct Entry {
    var sequence: UInt64
    var packet: EncodedPacket
    var sentAtNs: UInt64
  }

  private var entries: [Entry] = []
  private var head = 0
  private(set) var byteCount = 0

  var count: Int { entries.count - head }
  var isEmpty: Bool { count == 0 }
  var oldestSequence: UInt64? { isEmpty ? nil : entries[head].sequence }

  mutating func append(_ entry: Entry) {
    entries.append(entry)
    byteCount += entry.packet.data.count
  }

  /// Removes every frame up to and including `sequence`; returns the removed ones' send times.
  mutating func acknowledge(upTo sequence: UInt64) -> [UInt64] {
    var sentTimes: [UInt64] = []
    while head < entries.count && entries[head].sequence <= sequence {
      sentTimes.append(entries[head].sentAtNs)
      byteCount -= entries[head].packet.data.count
      head += 1
    }
    if head > 256 && head * 2 > entries.count {
      entries.removeFirst(head)
      head = 0
    }
    return sentTimes
  }

  /// The frames after `sequence`, to resend after a reconnect; their send times restart now.
  mutating func resend(after sequence: UInt64, now: UInt64) -> [Entry] {
    var result: [Entry] = []
    for i in head..<entries.count where entries[i].sequence > sequence {
      entries[i].sentAtNs = now
      result.append(entries[i])
    }
    return result
  }
}
