/// Where samples go in the shared-memory file: a ring of regions handed out in sending order and
/// given back in the same order (acks are cumulative, timeouts take the oldest), so a region is never
/// reused before the sample in it was acked or given up on. A value type; the sender guards it.
struct SharedMemoryRegions {
  let capacity: Int
  /// Regions in use, oldest first.
  private(set) var regions: [(tag: UInt64, offset: Int, length: Int)] = []

  init(capacity: Int) { self.capacity = capacity }

  var isEmpty: Bool { regions.isEmpty }

  /// A region of `length` bytes for sample `tag`, or nil while the free space is too small.
  mutating func allocate(_ length: Int, tag: UInt64) -> Int? {
    guard length > 0, length <= capacity else { return nil }
    let offset: Int
    if let oldest = regions.first, let newest = regions.last {
      let start = oldest.offset
      let end = newest.offset + newest.length
      if end > start {  // in use: [start, end); free: [end, capacity) and [0, start)
        if capacity - end >= length {
          offset = end
        } else if start >= length {
          offset = 0
        } else {
          return nil
        }
      } else {  // wrapped: in use [start, capacity) and [0, end); free: [end, start)
        guard start - end >= length else { return nil }
        offset = end
      }
    } else {
      offset = 0
    }
    regions.append((tag, offset, length))
    return offset
  }

  /// Whether a region of `length` bytes could be handed out now.
  func canAllocate(_ length: Int) -> Bool {
    var copy = self
    return copy.allocate(length, tag: .max) != nil
  }

  /// Gives back every region of a sample tagged at most `tag`; returns how many.
  @discardableResult
  mutating func free(upTo tag: UInt64) -> Int {
    let before = regions.count
    regions.removeAll { $0.tag <= tag }
    return before - regions.count
  }
}
