/// The known key closest to a misspelt one (edit distance), when it is close enough to be a guess.
enum NearestKey {
  static func among(_ known: some Collection<String>, to key: String) -> String? {
    let scored = known.map { ($0, distance($0.lowercased(), key.lowercased())) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
    guard let (best, score) = scored, score <= max(2, key.count / 3) else { return nil }
    return best
  }

  static func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
      var current = [i + 1]
      for (j, y) in b.enumerated() {
        current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
      }
      previous = current
    }
    return previous[b.count]
  }
}
