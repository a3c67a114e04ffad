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
    var stayed = 0
    await withTaskExecutorPreference(pinned) {
      for _ in 0..<50 {
        await withCheckedContinuation { resumed in loops[0].execute { resumed.resume() } }
        if loops[1].inEventLoop { stayed += 1 }
      }
    }
    #expect(stayed == 50)
    try await group.shutdownGracefully()
  }

  /// What the pin prevents: over the whole group a task moves to the loop that resumed it.
  @Test func aTaskOverTheGroupMovesToTheLoopThatResumesIt() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let loops = Array(group.makeIterator())
    var moved = 0
    await withTaskExecutorPreference(EventLoopTaskExecutor(group: group)) {
      for _ in 0..<50 {
        await withCheckedContinuation { resumed in loops[0].execute { resumed.resume() } }
        if loops[0].inEventLoop { moved += 1 }
      }
    }
    #expect(moved == 50)
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
}
