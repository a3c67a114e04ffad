/// The known key closest to a misspelt one (edit distance), when it is close enough to be a guess.
enum NearestKey {
  static func among(_ known: some Collection<String>, to key: String) -> String? {
    let target = Array(key.lowercased().unicodeScalars)
    var best: (key: String, score: Int)?
    var rows = ([Int](), [Int]())
    for candidate in known {
      let scalars = Array(candidate.lowercased().unicodeScalars)
      // The length difference is a lower bound of the distance: skip what cannot beat or tie the best.
      if let best, abs(scalars.count - target.count) > best.score { continue }
      let score = distance(scalars, target, rows: &rows)
      if let current = best, (current.score, current.key) <= (score, candidate) { continue }
      best = (candidate, score)
    }
    guard let best, best.score <= max(2, key.count / 3) else { return nil }
    return best.key
  }

  /// Levenshtein distance over two reused rows: an unknown key is compared with every known key, and
  /// a settings file may hold many unknown keys.
  private static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar], rows: inout ([Int], [Int])) -> Int {
    if a.isEmpty { return b.count }
    rows.0.removeAll(keepingCapacity: true)
    rows.0.append(contentsOf: 0...b.count)
    rows.1.removeAll(keepingCapacity: true)
    rows.1.append(contentsOf: repeatElement(0, count: b.count + 1))
    for (i, x) in a.enumerated() {
      rows.1[0] = i + 1
      for (j, y) in b.enumerated() {
        rows.1[j + 1] = min(rows.0[j + 1] + 1, rows.1[j] + 1, rows.0[j] + (x == y ? 0 : 1))
      }
      swap(&rows.0, &rows.1)
    }
    return rows.0[b.count]
  }
}
