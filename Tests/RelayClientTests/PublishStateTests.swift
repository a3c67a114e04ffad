import Foundation
import RelayCore
import Synchronization
import Testing

@testable import RelayClient

private let h264 = CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))

private func publishState() throws -> PublishState {
  var queue = FrameQueue(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
  queue.sourceOpened(h264)
  return PublishState(queue: queue, metrics: CameraMetrics(device: try DeviceID(validating: "cam-1")))
}

@Suite struct PublishStateTests {
  /// The capture thread waits for room with `blockUntil`: a change and its wake let it go, a wake
  /// without the change does not.
  @Test func aBlockedThreadGoesOnWhenAWakeMakesItsConditionTrue() async throws {
    let state = try publishState()
    let released = Atomic<Bool>(false)
    let thread = Thread {
      state.blockUntil { $0.captureReleased }
      released.store(true, ordering: .sequentiallyConsistent)
    }
    thread.start()
    try await Task.sleep(for: .milliseconds(50))
    state.withLock { $0.stats.framesCaptured += 1 }
    state.wake()
    try await Task.sleep(for: .milliseconds(50))
    let releasedEarly = released.load(ordering: .sequentiallyConsistent)
    #expect(!releasedEarly)
    state.withLock { $0.captureReleased = true }
    state.wake()
    for _ in 0..<500 where !released.load(ordering: .sequentiallyConsistent) {
      try await Task.sleep(for: .milliseconds(10))
    }
    let releasedAtLast = released.load(ordering: .sequentiallyConsistent)
    #expect(releasedAtLast)
  }
}
