import Testing

@testable import RelayServer

@Suite struct ConnectionShareTests {
  /// Counts the bodies running at once, and the most ever.
  actor Peak {
    var now = 0
    var most = 0
    func enter() { now += 1; most = max(most, now) }
    func leave() { now -= 1 }
  }

  @Test func aConnectionGetsAtMostItsPermitsAndTheRestWaitTheirTurn() async throws {
    let share = ConnectionShare(permits: 3)
    let crowd = Peak()
    let other = Peak()
    try await withThrowingTaskGroup(of: Void.self) { group in
      for _ in 0..<30 {
        group.addTask {
          try await share.withPermit(for: "crowd") {
            await crowd.enter()
            try await Task.sleep(for: .milliseconds(5))
            await crowd.leave()
          }
        }
      }
      group.addTask {
        try await share.withPermit(for: "other") {  // another connection is not behind the crowd
          await other.enter()
          await other.leave()
        }
      }
      try await group.waitForAll()
    }
    #expect(await crowd.most == 3)
    #expect(await other.most == 1)
    #expect(share.activeConnections == 0, "a connection with nothing in the making is forgotten")
  }

  @Test func aCancelledWaitGivesUpItsPlaceAndThePermitsStayCounted() async throws {
    let share = ConnectionShare(permits: 1)
    let holder = Task { try await share.withPermit(for: "c") { try await Task.sleep(for: .milliseconds(200)) } }
    try await Task.sleep(for: .milliseconds(20))
    let waiter = Task { try await share.withPermit(for: "c") { 1 } }
    try await Task.sleep(for: .milliseconds(20))
    waiter.cancel()
    await #expect(throws: CancellationError.self) { try await waiter.value }
    try await holder.value
    #expect(try await share.withPermit(for: "c") { 2 } == 2)
    #expect(share.activeConnections == 0)
  }
}
