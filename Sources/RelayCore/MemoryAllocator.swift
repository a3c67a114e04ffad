#if canImport(Glibc)
import Glibc
#endif

/// The process's malloc, and how it is tuned for frames: blocks of megabytes, freed on other threads
/// than the ones that made them, at tens to thousands a second.
///
/// By default glibc's malloc, with each frame-sized block on a mapping of its own (`configure`): memory
/// goes back as soon as a frame is freed, at the price of page-faulting every fresh block in. jemalloc,
/// preloaded (`LD_PRELOAD=libjemalloc.so.2` with the MALLOC_CONF in docs/performance.md, "Choosing the
/// allocator"), keeps a freed block mapped long enough to back the next frame of its size: it takes
/// relay-server's CPU per raw 1080p frame from 10.9 to 6.2 ms, but gains H.264 cameras nothing, and
/// raw frames at the limits outgrow the abuse tests' memory bound, so it is a choice for raw pictures
/// (AVA, the minimal protocol, raw cameras), not the default. Either way this type knows which one
/// serves, and gives freed memory back through it.
public enum MemoryAllocator {
  /// Whether jemalloc serves this process's mallocs (preloaded, or linked by whoever embeds this).
  public static var isJemalloc: Bool { jemallocControl != nil }

  /// glibc only: fixes the mmap threshold at 1 MiB and the arenas at four (see `configureGlibc`).
  /// glibc's own MALLOC_MMAP_THRESHOLD_ and MALLOC_ARENA_MAX win when set; under jemalloc, MALLOC_CONF.
  public static func configure() {
    if !isJemalloc { configureGlibc() }
  }

  /// Gives freed memory that is still mapped back to the system: jemalloc's dirty pages of every arena,
  /// or glibc's free heap pages (malloc_trim). Returns whether the call succeeded (glibc: whether memory
  /// was released).
  @discardableResult
  public static func returnFreedMemory() -> Bool {
    if let jemallocControl {
      return "arena.\(allArenas).purge".withCString { jemallocControl($0, nil, nil, nil, 0) } == 0
    }
    #if os(Linux)
    return glibcMallocTrim(0) == 1
    #else
    return false
    #endif
  }

  /// One line for the start-up log: which allocator, and the settings in effect (MALLOC_CONF included).
  public static var summary: String {
    guard isJemalloc else { return "glibc malloc" }
    let version = read("version", as: UnsafePointer<CChar>.self).map { String(cString: $0) } ?? "?"
    let decay = read("opt.dirty_decay_ms", as: Int.self).map(String.init) ?? "?"
    let muzzyDecay = read("opt.muzzy_decay_ms", as: Int.self).map(String.init) ?? "?"
    let background = read("opt.background_thread", as: Bool.self).map(String.init) ?? "?"
    let oversize = read("opt.oversize_threshold", as: Int.self).map(String.init) ?? "?"
    let arenas = read("opt.narenas", as: UInt32.self).map(String.init) ?? "?"
    return "jemalloc \(version) dirty_decay_ms:\(decay) muzzy_decay_ms:\(muzzyDecay) background_thread:\(background) "
      + "oversize_threshold:\(oversize) narenas:\(arenas)"
  }

  /// A jemalloc value (`opt.*`, `version`) of the C type `Value` stands for; nil for an unknown name.
  private static func read<Value: BitwiseCopyable>(_ name: String, as type: Value.Type) -> Value? {
    guard let jemallocControl else { return nil }
    let value = UnsafeMutableRawPointer.allocate(
      byteCount: MemoryLayout<Value>.size, alignment: MemoryLayout<Value>.alignment)
    defer { value.deallocate() }
    var length = MemoryLayout<Value>.size
    guard name.withCString({ jemallocControl($0, value, &length, nil, 0) }) == 0,
      length == MemoryLayout<Value>.size
    else { return nil }
    return value.load(as: Value.self)
  }

  /// jemalloc's `mallctl`, looked up in the running program: present only when jemalloc was loaded,
  /// so nothing here depends on it.
  private typealias Mallctl = @convention(c) (
    UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?, UnsafeMutableRawPointer?, Int
  ) -> Int32

  private static let jemallocControl: Mallctl? = {
    #if os(Linux)
    guard let program = dlopen(nil, RTLD_NOW), let symbol = dlsym(program, "mallctl") else { return nil }
    return unsafeBitCast(symbol, to: Mallctl.self)
    #else
    return nil
    #endif
  }()

  /// MALLCTL_ARENAS_ALL in <jemalloc/jemalloc.h>.
  private static let allArenas = 4096

  /// glibc's malloc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
  /// after the first multi-megabyte frame is freed, frames come from the heap, which then fragments and
  /// keeps hundreds of megabytes after a burst (measured: 8 devices of 4 MiB frames held 348 MiB against
  /// 269 MiB with the threshold fixed). Fixing it at 1 MiB gives every frame-sized block its own mapping,
  /// returned to the system when freed, at the price of page faults. And every thread that allocates gets
  /// an arena of its own, up to 8 per core, each keeping what was freed in it: in a 60-minute soak the
  /// server's memory rose in 8 MiB steps as Dispatch added worker threads. Four arenas bound that.
  private static func configureGlibc() {
    #if os(Linux)
    if getenv("MALLOC_MMAP_THRESHOLD_") == nil { _ = glibcMallopt(mmapThreshold, 1 << 20) }
    if getenv("MALLOC_ARENA_MAX") == nil { _ = glibcMallopt(arenaMax, 4) }
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
