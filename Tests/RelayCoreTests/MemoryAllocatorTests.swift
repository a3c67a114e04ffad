#if canImport(Glibc)
import Glibc
#endif
import RelayCore
import Testing

@Suite struct MemoryAllocatorTests {
  @Test func glibcServesTheTestsAndIsNamed() {
    // Nothing preloads jemalloc here, so its control interface must not be found.
    #expect(!MemoryAllocator.isJemalloc)
    #expect(MemoryAllocator.summary == "glibc malloc")
    #expect(MemoryAllocator.read("version", as: UnsafePointer<CChar>.self) == nil)
  }

  #if os(Linux)
  @Test func frameSizedBlocksKeepMappingsOfTheirOwnAfterOneIsFreed() throws {
    MemoryAllocator.configure()
    // Unconfigured, glibc raises its mmap threshold to the size of the first such block freed, and the
    // next one comes from the heap. glibc marks a mapped block in its size word (IS_MMAPPED, 0x2).
    for _ in 0..<3 {
      let block = try #require(malloc(4 << 20))
      let sizeWord = block.load(fromByteOffset: -MemoryLayout<UInt>.size, as: UInt.self)
      #expect(sizeWord & 0x2 != 0, "a 4 MiB block came from the heap, not a mapping of its own")
      free(block)
    }
  }
  #endif
}
