import Configuration
import Foundation
import Yams

/// One program's settings, from three layers, the later overriding the earlier: the YAML file
/// (`--config`), `FRAMERELAY_…` environment variables, and flags. The file and the environment are
/// merged by swift-configuration (a `ConfigReader` over the environment provider, prefixed, then the
/// file); a flag that was given wins over both. Every key is written once, as its flag would be
/// split: `ring.maxBytes` is `--ring-max-bytes`, `FRAMERELAY_RING_MAX_BYTES` and `ring: {maxBytes: …}`.
///
/// Each key read is remembered, so `--print-config` shows the effective values and a file key that
/// nothing reads is reported as unknown, with the nearest known key. Problems are collected, one line
/// each; `finish()` throws them all at once.
public final class Settings {
  public enum Source: String { case flag, environment, file, `default` }

  private let file: SettingsFile?
  private let merged: ConfigReader
  private let environmentOnly: ConfigReader
  private var shown: [(key: String, value: ShownValue)] = []
  private var known: Set<String> = []
  private var problems: [String] = []

  enum ShownValue {
    case scalar(String?)
    case list([String])
    case records([[(String, String)]])
  }

  public static let environmentPrefix = "FRAMERELAY"

  public init(file path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(SettingsProblems) {
    let file = try path.map { path throws(SettingsProblems) in try SettingsFile(path: path) }
    self.file = file
    var values: [AbsoluteConfigKey: ConfigValue] = [:]
    for (key, entry) in file?.entries ?? [:] {
      switch entry.value {
      case .scalar(let text): values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(.string(text), isSecret: false)
      case .list(let items): values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(.stringArray(items), isSecret: false)
      case .records: break  // read through records(_:)
      }
    }
    let environmentProvider = EnvironmentVariablesProvider(environmentVariables: environment)
      .prefixKeys(with: ConfigKey(Self.environmentPrefix.lowercased()))
    merged = ConfigReader(providers: [environmentProvider, InMemoryProvider(name: path, values: values)])
    environmentOnly = ConfigReader(provider: environmentProvider)
  }

  // MARK: Typed reads

  /// `masked` shows a value with its secret part hidden (a URL's password); `secret` hides it all.
  public func string(
    _ key: String, flag: String?, default fallback: String?, secret: Bool = false, masked: ((String) -> String)? = nil
  ) -> String? {
    let (text, _) = lookup(key, flag: flag)
    let value = text ?? fallback
    remember(key, .scalar(secret && value != nil ? "********" : value.map { masked?($0) ?? $0 }))
    return value
  }

  /// A value of any type, parsed by `parse`; a value it refuses is a problem naming `allowed`.
  public func value<T>(
    _ key: String, flag: String?, default fallback: T, allowed: String, shown: (T) -> String = { "\($0)" },
    parse: (String) -> T?
  ) -> T {
    let (text, source) = lookup(key, flag: flag)
    guard let text else {
      remember(key, .scalar(shown(fallback)))
      return fallback
    }
    guard let parsed = parse(text) else {
      problem(key, source: source, "\"\(text)\" is not \(allowed)")
      remember(key, .scalar(text))
      return fallback
    }
    remember(key, .scalar(shown(parsed)))
    return parsed
  }

  public func int(_ key: String, flag: Int?, default fallback: Int, allowed range: ClosedRange<Int> = 1...Int.max) -> Int {
    value(key, flag: flag.map(String.init), default: fallback, allowed: Self.describe(range)) { text in
      Int(text.replacingOccurrences(of: "_", with: "")).flatMap { range.contains($0) ? $0 : nil }
    }
  }

  /// Every number setting is seconds or a size; `maximum` keeps `inf`, `1e300` and the like out, which
  /// the programs would otherwise turn into a crash converting them to whole milliseconds (found by
  /// fuzzing: Tests/Fuzz/Regressions/settings).
  public func double(
    _ key: String, flag: Double?, default fallback: Double, atLeast minimum: Double = 0, orMore inclusive: Bool = false,
    atMost maximum: Double = Settings.largestNumber
  ) -> Double {
    let lower = inclusive ? "at least \(Self.describe(minimum))" : "above \(Self.describe(minimum))"
    let allowed = "a number \(lower) and at most \(Self.describe(maximum))"
    return value(key, flag: flag.map { "\($0)" }, default: fallback, allowed: allowed) { text in
      Double(text).flatMap { number in
        (inclusive ? number >= minimum : number > minimum) && number <= maximum ? number : nil  // nan fails both
      }
    }
  }

  /// 10^9: about 31 years in seconds, a billion bytes or frames; its milliseconds still fit an Int.
  public static let largestNumber: Double = 1_000_000_000

  private static func describe(_ number: Double) -> String {
    number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : "\(number)"
  }

  public func bool(_ key: String, flag: Bool?, default fallback: Bool) -> Bool {
    value(key, flag: flag.map { $0 ? "true" : "false" }, default: fallback, allowed: "true or false") { text in
      switch text.lowercased() {
      case "true", "yes", "on", "1": true
      case "false", "no", "off", "0": false
      default: nil
      }
    }
  }

  /// A list: repeated flags, a YAML list, or a comma-separated environment variable.
  public func strings(_ key: String, flag: [String], default fallback: [String]) -> [String] {
    known.insert(key)
    let value: [String]
    if !flag.isEmpty {
      value = flag
    } else if let listed = merged.stringArray(forKey: ConfigKey(key)) {
      value = listed
    } else if let single = merged.string(forKey: ConfigKey(key)) {
      value = [single]
    } else {
      value = fallback
    }
    shown.append((key, .list(value)))
    return value
  }

  /// A list of mappings from the file (`cameras:`), each read through a `SettingsRecord`.
  public func records(_ key: String) -> [SettingsRecord] {
    known.insert(key)
    guard let entry = file?.entries[key] else { return [] }
    guard case .records(let records) = entry.value else {
      problems.append("\(file!.path):\(entry.line): \(key): must be a list of mappings (- device: …)")
      return []
    }
    return records.enumerated().map { index, fields in
      SettingsRecord(key: "\(key)[\(index)]", fields: fields, path: file!.path, settings: self)
    }
  }

  /// A problem that is about no key in particular.
  public func problem(message: String) { problems.append(message) }

  /// A problem found by a check across several keys.
  public func problem(_ key: String, _ message: String) {
    problems.append("\(SettingsKey.snake(key)) (\(Self.flagName(key))): \(message)")
  }

  // MARK: The end

  /// Unknown file keys and every problem, or nothing.
  public func finish() throws(SettingsProblems) {
    if let file {
      for (key, entry) in file.entries.sorted(by: { $0.value.line < $1.value.line }) where !known.contains(key) {
        let hint = NearestKey.among(known, to: key).map { "; did you mean \(SettingsKey.snake($0))?" } ?? ""
        problems.append("\(file.path):\(entry.line): unknown key \(SettingsKey.snake(key))\(hint)")
      }
    }
    if !problems.isEmpty { throw SettingsProblems(problems) }
  }

  /// The effective settings as YAML, secrets masked, in the order they were read.
  public func yaml() -> String {
    var root = Tree()
    for (key, value) in shown { root.insert(SettingsKey.snake(key).split(separator: ".").map(String.init), value) }
    let text = (try? Yams.serialize(node: root.node, width: -1)) ?? ""
    return text
  }

  // MARK: Internals

  func recordProblem(_ line: String) { problems.append(line) }

  func remember(_ key: String, _ value: ShownValue) {
    known.insert(key)
    shown.append((key, value))
  }

  private func lookup(_ key: String, flag: String?) -> (String?, Source) {
    if let flag { return (flag, .flag) }
    guard let text = merged.string(forKey: ConfigKey(key)) else {
      if let entry = file?.entries[key], !entry.isScalar {
        problem(key, source: .file, "must be a single value, not a list")
      }
      return (nil, .default)
    }
    return (text, environmentOnly.string(forKey: ConfigKey(key)) != nil ? .environment : .file)
  }

  private func problem(_ key: String, source: Source, _ message: String) {
    switch source {
    case .flag: problems.append("\(Self.flagName(key)): \(message)")
    case .environment: problems.append("\(Self.environmentName(key)): \(message)")
    case .file, .default:
      let line = file?.entries[key]?.line.description ?? "?"
      problems.append("\(file?.path ?? "settings"):\(line): \(SettingsKey.snake(key)): \(message)")
    }
  }

  /// `ring.maxBytes` → `--ring-max-bytes`.
  public static func flagName(_ key: String) -> String {
    "--" + words(key).joined(separator: "-")
  }

  /// `ring.maxBytes` → `FRAMERELAY_RING_MAX_BYTES`.
  public static func environmentName(_ key: String) -> String {
    ([environmentPrefix] + words(key).map { $0.uppercased() }).joined(separator: "_")
  }

  private static func words(_ key: String) -> [String] {
    key.split(separator: ".").flatMap { component -> [String] in
      var words: [String] = [""]
      for character in component {
        if character.isUppercase && !(words.last?.isEmpty ?? true) { words.append("") }
        words[words.count - 1].append(character.lowercased())
      }
      return words
    }
  }

  private static func describe(_ range: ClosedRange<Int>) -> String {
    switch (range.lowerBound, range.upperBound) {
    case (_, Int.max): return "a whole number of at least \(range.lowerBound)"
    default: return "a whole number from \(range.lowerBound) to \(range.upperBound)"
    }
  }
}

/// One mapping of a list (one camera): its fields are read like keys, unknown ones are problems.
public final class SettingsRecord {
  public let key: String
  private let fields: [String: SettingsFile.Entry]
  private let path: String
  private let settings: Settings
  private var read: Set<String> = []
  private var shown: [(String, String)] = []

  init(key: String, fields: [String: SettingsFile.Entry], path: String, settings: Settings) {
    self.key = key
    self.fields = fields
    self.path = path
    self.settings = settings
  }

  public func string(_ field: String, secret: Bool = false, masked: ((String) -> String)? = nil) -> String? {
    read.insert(field)
    guard let entry = fields[field] else { return nil }
    guard case .scalar(let text) = entry.value else {
      settings.recordProblem("\(path):\(entry.line): \(key).\(field): must be a plain value")
      return nil
    }
    shown.append((SettingsKey.snake(field), secret ? "********" : masked?(text) ?? text))
    return text
  }

  public func problem(_ message: String) {
    settings.recordProblem("\(path):\(fields.values.map(\.line).min() ?? 0): \(key): \(message)")
  }

  public func problem(_ field: String, _ message: String) {
    let line = fields[field]?.line ?? fields.values.map(\.line).min() ?? 0
    settings.recordProblem("\(path):\(line): \(key).\(SettingsKey.snake(field)): \(message)")
  }

  /// Reports the fields nothing read, with the nearest known field.
  public func finish(knownFields: Set<String>) {
    for (field, entry) in fields where !read.contains(field) && !knownFields.contains(field) {
      let hint = NearestKey.among(knownFields, to: field).map { "; did you mean \(SettingsKey.snake($0))?" } ?? ""
      settings.recordProblem("\(path):\(entry.line): \(key): unknown key \(SettingsKey.snake(field))\(hint)")
    }
    settings.appendRecord(key, shown)
  }
}

extension Settings {
  fileprivate func appendRecord(_ key: String, _ fields: [(String, String)]) {
    let name = String(key.prefix { $0 != "[" })
    if let index = shown.lastIndex(where: { $0.key == name }), case .records(var records) = shown[index].value {
      records.append(fields)
      shown[index] = (name, .records(records))
    } else {
      shown.append((name, .records([fields])))
    }
  }
}

/// Nested keys for printing.
private struct Tree {
  var children: [(String, Tree)] = []
  var leaf: Settings.ShownValue?

  mutating func insert(_ path: [String], _ value: Settings.ShownValue) {
    guard let first = path.first else {
      leaf = value
      return
    }
    if let index = children.firstIndex(where: { $0.0 == first }) {
      children[index].1.insert(Array(path.dropFirst()), value)
    } else {
      var child = Tree()
      child.insert(Array(path.dropFirst()), value)
      children.append((first, child))
    }
  }

  /// Nothing below is set (every leaf null).
  var isEmpty: Bool {
    if let leaf, case .scalar(let text) = leaf { return text == nil && children.allSatisfy(\.1.isEmpty) }
    return leaf == nil && children.allSatisfy(\.1.isEmpty)
  }

  var node: Node {
    // A key that is both a value and a mapping (`tls: true`, `tls: {ca: …}`): the mapping when set.
    if let leaf, children.isEmpty || children.allSatisfy(\.1.isEmpty) {
      switch leaf {
      case .scalar(let text): return text.map { Node($0) } ?? Node("~", Tag(.null))
      case .list(let items): return Node(items.map { Node($0) })
      case .records(let records):
        return Node(records.map { fields in Node(fields.map { (Node($0.0), Node($0.1)) }) })
      }
    }
    return Node(children.map { (Node($0.0), $0.1.node) })
  }
}
