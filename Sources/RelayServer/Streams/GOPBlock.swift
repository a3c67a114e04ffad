import Foundation

/// One closed GOP's bytes; freed when the last of its packets' Data goes.
final class GOPBlock: @unchecked Sendable {  // base is written once, before any Data shares it
  /// Larger GOPs (very high bit rates) stay as they came: a copy that big buys little against their size.
  static let maxBytes = 4 << 20
  let base: UnsafeMutableRawPointer

  init?(byteCount: Int) {
    guard let base = malloc(byteCount) else { return nil }
    self.base = base
  }

  deinit { free(base) }
}
