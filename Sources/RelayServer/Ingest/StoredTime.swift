/// The times a stored frame may carry (ms since the epoch, on the server's clock). A time that a
/// publisher's numbers would put outside this range (a clock offset or timestamp that overflows, a
/// date past the year 9999) is not a capture time: the frame gets its arrival time instead, so that
/// ring spans, replays and recording names are computed on sane numbers and never overflow.
enum StoredTime {
  static let usableMs: ClosedRange<Int64> = 0...253_402_300_799_999  // through 9999-12-31

  /// `ms + offset`, or nil when that overflows or falls outside `usableMs`.
  static func adding(_ offset: Int64, to ms: Int64) -> Int64? {
    let (sum, overflow) = ms.addingReportingOverflow(offset)
    return !overflow && usableMs.contains(sum) ? sum : nil
  }
}
