import Foundation
import RelayCore
import Testing

@Suite struct HandoffQueueTests {
  @Test func deliversInOrderFromAThread() async throws {
    let queue = HandoffQueue<Int>(capacity: 4)
    DedicatedThread.start(name: "producer") {
      for i in 1...1000 { queue.push(i) }
      queue.finish()
    }
    var received: [Int] = []
    while let value = try await queue.next() { received.append(value) }
    #expect(received == Array(1...1000))
  }

  @Test func producerBlocksWhileFull() async throws {
    let queue = HandoffQueue<Int>(capacity: 2)
    let pushed = Counter()
    DedicatedThread.start(name: "producer") {
      for i in 1...5 {
        guard queue.push(i) else { return }
        pushed.increment()
      }
    }
    try await Task.sleep(for: .milliseconds(200))
    #expect(pushed.value == 2)
    _ = try await queue.next()
    try await Task.sleep(for: .milliseconds(200))
    #expect(pushed.value == 3)
    queue.finish()
  }

  @Test func cancellingAWaiterLeavesTheQueueOpen() async throws {
    let queue = HandoffQueue<Int>(capacity: 2)
    let waiter = Task { try await queue.next() }
    try await Task.sleep(for: .milliseconds(50))
    waiter.cancel()
    await #expect(throws: CancellationError.self) { try await waiter.value }
    #expect(queue.push(7))
    #expect(try await queue.next() == 7)
  }

  @Test func finishWithErrorReachesTheConsumerAfterTheRest() async throws {
    struct Broken: Error {}
    let queue = HandoffQueue<Int>(capacity: 2)
    queue.push(1)
    queue.finish(throwing: Broken())
    #expect(try await queue.next() == 1)
    await #expect(throws: Broken.self) { try await queue.next() }
    #expect(!queue.push(2))
  }
}

private final class Counter: @unchecked Sendable {
  private let lock = NSLock()  // guards count
  private var count = 0
  func increment() { lock.withLock { count += 1 } }
  var value: Int { lock.withLock { count } }
}
