import RelayCore
import Synchronization

/// Where each VideoLatestImage consumer is in each device's frames, so it never gets a frame twice.
/// A consumer is the id it gives in `x-consumer-id` metadata, else its connection (peer address):
/// unary-style consumers make a new call per frame, and only their connection stays the same.
/// Bounded: the least recently seen are forgotten first.
final class ConsumerCursors: Sendable {
  static let consumerIDKey = "x-consumer-id"

  struct Key: Hashable, Sendable {
    var peer: String
    var device: DeviceID
    var keyframeOnly: Bool
  }

  private struct Entry {
    var cursor: UInt64
    var lastSeen: UInt64
  }

  private let capacity: Int
  private let entries = Mutex<[Key: Entry]>([:])

  init(capacity: Int) { self.capacity = capacity }

  func cursor(for key: Key) -> UInt64 {
    entries.withLock { $0[key]?.cursor ?? 0 }
  }

  /// Consumers per device seen within `window` (a web page's preview is not one: it is no cursor).
  func active(within window: Duration = .seconds(10)) -> [DeviceID: Int] {
    let since = WallClock.monotonicNs() &- UInt64(window.components.seconds) * 1_000_000_000
    return entries.withLock { entries in
      var peers: [DeviceID: Set<String>] = [:]
      for (key, entry) in entries where entry.lastSeen >= since { peers[key.device, default: []].insert(key.peer) }
      return peers.mapValues(\.count)
    }
  }

  func advance(_ key: Key, to cursor: UInt64) {
    entries.withLock { entries in
      entries[key] = Entry(cursor: max(cursor, entries[key]?.cursor ?? 0), lastSeen: WallClock.monotonicNs())
      if entries.count > capacity, let oldest = entries.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
        entries[oldest.key] = nil
      }
    }
  }
}
