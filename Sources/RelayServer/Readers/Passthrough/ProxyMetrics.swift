import Metrics
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

  private let counters = DeviceCounters(["framerelay_proxy_packets_total", "framerelay_proxy_reconnects_total"])

  func packetSent(_ device: DeviceID) {
    update(device) { $0.packets += 1 }
    counters.of(device)[0].increment()
  }

  func connectionFailed(_ device: DeviceID) {
    update(device) { $0.connected = false; $0.reconnects += 1 }
    counters.of(device)[1].increment()
  }

  var all: [DeviceID: Figures] { figures.withLock { $0 } }
}
