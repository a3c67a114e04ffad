import Metrics
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

  private let counters = DeviceCounters(["framerelay_recording_frames_total", "framerelay_recording_errors_total"])

  func frameRecorded(_ device: DeviceID) {
    counts.withLock { $0[device, default: Counts()].frames += 1 }
    counters.of(device)[0].increment()
  }

  func failed(_ device: DeviceID) {
    counts.withLock { $0[device, default: Counts()].errors += 1 }
    counters.of(device)[1].increment()
  }
  func counts(_ device: DeviceID) -> Counts { counts.withLock { $0[device] ?? Counts() } }
}
