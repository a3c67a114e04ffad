#if canImport(Glibc)
import Glibc
#endif

/// glibc's malloc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
/// after the first multi-megabyte frame is freed, frames come from the heap, which then fragments and
/// keeps hundreds of megabytes after a burst (measured: 8 devices of 4 MiB frames held 348 MiB against
/// 269 MiB with the threshold fixed). Fixing it at 1 MiB gives every frame-sized block its own mapping,
/// returned to the system when freed. And every thread that allocates gets an arena of its own, up to
/// 8 per core, each keeping what was freed in it: in a 60-minute soak the server's memory rose in 8 MiB
/// steps as Dispatch added worker threads. Four arenas bound that and are plenty for 2–4 cores.
///
/// The price: every fresh frame-sized block is page-faulted in, 4 KiB at a time. On the multi-megabyte
/// paths (raw 1080p ingest, 1080p answers) that is about half of relay-server's CPU; a 32 MiB threshold
/// ingested raw 1080p 1.56x faster, but the heap then outgrew the memory bound the abuse test holds the
/// server to (docs/performance.md, "Raw ingest"). glibc's own variables (MALLOC_MMAP_THRESHOLD_,
/// MALLOC_ARENA_MAX), when set, win, so that trade can be measured or chosen without a rebuild.
public enum LargeAllocations {
  public static func mapEachFrameOnItsOwn() {
    #if os(Linux)
    if getenv("MALLOC_MMAP_THRESHOLD_") == nil { _ = glibcMallopt(mmapThreshold, 1 << 20) }
    if getenv("MALLOC_ARENA_MAX") == nil { _ = glibcMallopt(arenaMax, 4) }
    #endif
  }

  /// Gives the pages of freed heap memory back to the system (glibc's malloc_trim). Blocks under the
  /// mmap threshold (answers of a crowd of consumers, bursts of small frames) are freed into their arena
  /// and stay resident, so RSS keeps the high-water mark of the worst burst since the start (a soak
  /// measured a 9 MiB step that never went away). Returns whether memory was released.
  @discardableResult
  public static func returnFreedMemory() -> Bool {
    #if os(Linux)
    return glibcMallocTrim(0) == 1
    #else
    return false
    #endif
  }

  /// M_MMAP_THRESHOLD and M_ARENA_MAX in <malloc.h>, which the Glibc module does not import.
  private static let mmapThreshold: Int32 = -3
  private static let arenaMax: Int32 = -8
}

#if os(Linux)
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
