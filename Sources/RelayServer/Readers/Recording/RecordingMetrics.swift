import RelayCore
import Synchronization

/// Recording counts per device since start, and the bytes of all segments at the last retention scan.
final class RecordingMetrics: Sendable {
  struct Counts: Sendable {
    var frames = 0
    var errors = 0
  }

  private let counts = Mutex<[DeviceID: Counts]>([:])
  let bytesOnDisk = Atomic<Int>(0)

  func frameRecorded(_ device: DeviceID) { counts.withLock { $0[device, default: Counts()].frames += 1 } }
  func failed(_ device: DeviceID) { counts.withLock { $0[device, default: Counts()].errors += 1 } }
  func counts(_ device: DeviceID) -> Counts { counts.withLock { $0[device] ?? Counts() } }
}
