import Synchronization

/// The newest decoded frame of a stream (and the newest keyframe), and the consumers waiting for one.
/// Each consumer brings its own cursor, so consumers never share or steal frames. Frames belong to one
/// decoder run: `begin` and `end` forget the frames of the run before, so nothing stale is handed out.
final class LatestFrames: Sendable {
  private struct Waiter {
    var after: UInt64
    var keyframeOnly: Bool
    var continuation: CheckedContinuation<LiveFrame?, Never>
  }

  private struct State {
    var run = 0
    var latest: LiveFrame?
    var latestKeyframe: LiveFrame?
    var waiters: [UInt64: Waiter] = [:]
    var nextWaiterID: UInt64 = 0
  }

  private let state = Mutex(State())

  /// A decoder run starts (or its codec changed): frames from before are gone.
  func begin(run: Int) {
    state.withLock { $0.run = run; $0.latest = nil; $0.latestKeyframe = nil }
  }

  /// The run is over: its frames are no longer live.
  func end(run: Int) {
    state.withLock { state in
      guard state.run == run else { return }
      state.latest = nil
      state.latestKeyframe = nil
    }
  }

  /// Whether the current run has produced a frame yet (a cold stream has none).
  var hasFrame: Bool { state.withLock { $0.latest != nil } }

  func publish(_ frame: LiveFrame, run: Int) {
    let ready: [CheckedContinuation<LiveFrame?, Never>] = state.withLock { state in
      guard state.run == run else { return [] }
      state.latest = frame
      if frame.isKeyframe { state.latestKeyframe = frame }
      var ready: [CheckedContinuation<LiveFrame?, Never>] = []
      for (id, waiter) in state.waiters where Self.matches(frame, waiter.after, waiter.keyframeOnly) {
        ready.append(waiter.continuation)
        state.waiters[id] = nil
      }
      return ready
    }
    for continuation in ready { continuation.resume(returning: frame) }
  }

  /// The newest frame with a packet index above `after` (a keyframe if asked), waiting up to `timeout`.
  func next(after: UInt64, keyframeOnly: Bool, timeout: Duration) async -> LiveFrame? {
    if let frame = state.withLock({ Self.newest(in: $0, after: after, keyframeOnly: keyframeOnly) }) {
      return frame
    }
    guard timeout > .zero else { return nil }
    let id = state.withLock { state -> UInt64 in
      state.nextWaiterID += 1
      return state.nextWaiterID
    }
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<LiveFrame?, Never>) in
        let immediate: LiveFrame?? = state.withLock { state in
          if let frame = Self.newest(in: state, after: after, keyframeOnly: keyframeOnly) { return .some(frame) }
          if Task.isCancelled { return .some(nil) }
          state.waiters[id] = Waiter(after: after, keyframeOnly: keyframeOnly, continuation: continuation)
          return nil
        }
        if let immediate {
          continuation.resume(returning: immediate)
          return
        }
        Task {
          try? await Task.sleep(for: timeout)
          self.expire(id)
        }
      }
    } onCancel: {
      self.expire(id)
    }
  }

  private func expire(_ id: UInt64) {
    let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
    waiter?.continuation.resume(returning: nil)
  }

  private static func newest(in state: State, after: UInt64, keyframeOnly: Bool) -> LiveFrame? {
    let candidate = keyframeOnly ? state.latestKeyframe : state.latest
    guard let candidate, matches(candidate, after, keyframeOnly) else { return nil }
    return candidate
  }

  private static func matches(_ frame: LiveFrame, _ after: UInt64, _ keyframeOnly: Bool) -> Bool {
    frame.packetIndex > after && (!keyframeOnly || frame.isKeyframe)
  }
}
