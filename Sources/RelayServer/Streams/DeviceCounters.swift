import Metrics
import RelayCore
import Synchronization

/// swift-metrics counters labelled by device, made once per device and kept: making a handle looks it
/// up in the metrics backend, too slow for once a frame.
final class DeviceCounters: Sendable {
  private let labels: [String]
  private let handles = Mutex<[DeviceID: [Counter]]>([:])

  init(_ labels: [String]) { self.labels = labels }

  /// The device's counters, in the order of `labels`.
  func of(_ device: DeviceID) -> [Counter] {
    handles.withLock { handles in
      if let existing = handles[device] { return existing }
      let made = labels.map { Counter(label: $0, dimensions: [("device", device.rawValue)]) }
      handles[device] = made
      return made
    }
  }
}
