import RelayCore
import Synchronization

/// Proxy figures per device, for /metrics.
final class ProxyMetrics: Sendable {
  struct Figures: Sendable {
    var on = false
    var connected = false
    var packets = 0
    var reconnects = 0
  }

  private let figures = Mutex<[DeviceID: Figures]>([:])

  func update(_ device: DeviceID, _ change: (inout Figures) -> Void) {
    figures.withLock { change(&$0[device, default: Figures()]) }
  }

  var all: [DeviceID: Figures] { figures.withLock { $0 } }
}
