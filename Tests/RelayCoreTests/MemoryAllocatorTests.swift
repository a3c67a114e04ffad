import RelayCore
import Testing

// What glibc's tuning buys is held end to end, where it can be: test_abuse.py's memory bounds (the
// tests here share one process whose heap earlier tests have already shaped).
@Suite struct MemoryAllocatorTests {
  @Test func glibcServesTheTestsAndIsNamed() {
    // Nothing preloads jemalloc here, so its control interface must not be found.
    #expect(!MemoryAllocator.isJemalloc)
    #expect(MemoryAllocator.summary == "glibc malloc")
  }
}
