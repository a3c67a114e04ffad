import Testing

@testable import RelayClient

@Suite struct SharedMemoryRegionsTests {
  @Test func handsOutRegionsInOrderAndWrapsOnlyIntoFreedSpace() {
    var regions = SharedMemoryRegions(capacity: 100)
    #expect(regions.allocate(40, tag: 1) == 0)
    #expect(regions.allocate(40, tag: 2) == 40)
    #expect(regions.allocate(40, tag: 3) == nil, "20 bytes left at the end, and the start is in use")
    regions.free(upTo: 1)
    #expect(regions.allocate(40, tag: 3) == 0, "wraps into the region sample 1 gave back")
    #expect(regions.allocate(10, tag: 4) == nil, "0..40 and 40..80 are in use: never overlap a region not yet acked")
    regions.free(upTo: 2)
    #expect(regions.allocate(10, tag: 4) == 40)
    #expect(regions.canAllocate(50))
    #expect(!regions.canAllocate(51))
  }

  @Test func aCumulativeAckFreesEverythingUpToIt() {
    var regions = SharedMemoryRegions(capacity: 30)
    for tag in UInt64(1)...3 { #expect(regions.allocate(10, tag: tag) != nil) }
    #expect(regions.allocate(1, tag: 4) == nil)
    #expect(regions.free(upTo: 2) == 2)
    #expect(regions.allocate(20, tag: 4) == 0)
    #expect(regions.free(upTo: 99) == 2)
    #expect(regions.isEmpty)
  }

  @Test func refusesWhatCanNeverFit() {
    var regions = SharedMemoryRegions(capacity: 10)
    #expect(regions.allocate(11, tag: 1) == nil)
    #expect(regions.allocate(0, tag: 1) == nil)
  }
}
