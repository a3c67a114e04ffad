import NIOCore
import NIOPosix
import Testing

@testable import RelayServer

/// A call's writes stay in order only if its task never changes loops (see LoopPinnedTransport).
struct LoopExecutorsTests {
  @Test func aPinnedTaskStaysOnItsLoopWhenAnotherLoopResumesIt() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let loops = Array(group.makeIterator())
    let executors = LoopExecutors(group: group)
    let pinned = try await loops[1].submit { executors.current }.get()
    #expect(await timesOn(loops[1], preferring: pinned, resumedBy: loops[0]) == 50)
    try await group.shutdownGracefully()
  }

  /// What the pin prevents: over the whole group a task moves to the loop that resumes it.
  @Test func aTaskOverTheGroupMovesToTheLoopThatResumesIt() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let loops = Array(group.makeIterator())
    #expect(await timesOn(loops[0], preferring: EventLoopTaskExecutor(group: group), resumedBy: loops[0]) == 50)
    try await group.shutdownGracefully()
  }

  @Test func offALoopTheFirstLoopIsChosen() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let loops = Array(group.makeIterator())
    let executors = LoopExecutors(group: group)
    var onFirst = false
    await withTaskExecutorPreference(executors.current) { onFirst = loops[0].inEventLoop }
    #expect(onFirst)
    try await group.shutdownGracefully()
  }

  /// Suspends a task preferring `executor` 50 times, each resumed from `resumer`; counts the times it
  /// then ran on `loop`.
  private func timesOn(_ loop: any EventLoop, preferring executor: any TaskExecutor, resumedBy resumer: any EventLoop) async -> Int {
    var times = 0
    await withTaskExecutorPreference(executor) {
      for _ in 0..<50 {
        await withCheckedContinuation { resumed in resumer.execute { resumed.resume() } }
        if loop.inEventLoop { times += 1 }
      }
    }
    return times
  }
}
