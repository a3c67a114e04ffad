import Testing

@testable import RelayServer

@Suite struct AVATimelineTests {
  @Test func ticksCountFromTheFirstSamplesArrival() {
    var timeline = AVATimeline(timescale: 90_000)
    #expect(timeline.serverTime(ticks: 900_000, arrivedMs: 5_000) == 5_000)
    #expect(timeline.serverTime(ticks: 903_000, arrivedMs: 5_050) == 5_033, "3000 ticks are 33 ms")
  }

  @Test func zeroOrBackwardsTimestampsTakeTheArrivalTime() {
    var timeline = AVATimeline(timescale: 90_000)
    #expect(timeline.serverTime(ticks: 0, arrivedMs: 1_000) == 1_000)
    #expect(timeline.serverTime(ticks: 0, arrivedMs: 1_040) == 1_040)
    var backwards = AVATimeline(timescale: 90_000)
    _ = backwards.serverTime(ticks: 90_000, arrivedMs: 2_000)
    #expect(backwards.serverTime(ticks: 45_000, arrivedMs: 2_100) == 2_100)
    #expect(backwards.serverTime(ticks: 45_000, arrivedMs: 2_100) == 2_101, "never the same ms twice")
  }
}
