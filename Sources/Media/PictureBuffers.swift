import Foundation
import Synchronization

/// Uninitialised buffers for pictures and their serialized answers, reused once the last Data holding
/// one is gone (on whichever thread that is).
///
/// Why: under glibc's malloc a multi-megabyte block is a mapping of its own (MemoryAllocator fixes the
/// threshold at 1 MiB), so a fresh buffer per frame costs a page fault per 4 KiB written, 1,500 for one
/// 1080p bgr24 picture, and an munmap when freed: with four such buffers per picture, faults were about a
/// third of relay-server's CPU while one consumer took 1080p pictures (perf). A reused buffer is already
/// mapped. jemalloc, when preloaded, keeps freed blocks mapped for a while; this reuse holds however
/// slowly pictures come.
/// Keeps at most `keep` free buffers, all of the size class asked for last (sizes rounded up to 4 KiB,
/// so a keyframe's answer, a few bytes longer, takes the same buffers); a new class lets the old go.
public final class PictureBuffers: Sendable {
  private struct Free {
    var size = 0
    var addresses: [UInt] = []  // UInt, not pointers: the state crosses threads, and is only ours
  }

  private let freeList = Mutex(Free())
  private let keep: Int

  public init(keep: Int = 2) { self.keep = keep }

  deinit {
    freeList.withLock { state in
      for address in state.addresses { free(UnsafeMutableRawPointer(bitPattern: address)) }
    }
  }

  /// Free buffers kept right now (for tests).
  public var freeCount: Int { freeList.withLock { $0.addresses.count } }

  /// `count` bytes, uninitialised, written by `fill` before anyone else sees them; nil if memory ran out.
  public func data<E: Error>(count: Int, fill: (UnsafeMutableRawPointer) throws(E) -> Void) throws(E) -> Data? {
    guard count > 0 else { return Data() }
    let size = Self.sizeClass(count)
    let reused = freeList.withLock { state -> UInt? in
      if state.size != size {
        for address in state.addresses { free(UnsafeMutableRawPointer(bitPattern: address)) }
        state = Free(size: size)
      }
      return state.addresses.popLast()
    }
    guard let bytes = reused.flatMap({ UnsafeMutableRawPointer(bitPattern: $0) }) ?? malloc(size) else { return nil }
    do {
      try fill(bytes)
    } catch {
      recycle(bytes, count: count)
      throw error
    }
    return Data(bytesNoCopy: bytes, count: count, deallocator: .custom { [self] bytes, count in recycle(bytes, count: count) })
  }

  private static func sizeClass(_ count: Int) -> Int { (count + 4095) & ~4095 }

  /// `count` is the Data's length when it went (a Data that shrank falls in a smaller class: freed).
  private func recycle(_ bytes: UnsafeMutableRawPointer, count: Int) {
    let address = UInt(bitPattern: bytes)
    let size = Self.sizeClass(count)
    let kept = freeList.withLock { state -> Bool in
      guard state.size == size, state.addresses.count < keep else { return false }
      state.addresses.append(address)
      return true
    }
    if !kept { free(bytes) }
  }
}
