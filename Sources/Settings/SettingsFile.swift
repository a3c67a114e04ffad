import Foundation
import Yams

/// A YAML settings file, flattened to dotted keys (`tls.cert`, `ring.maxBytes`): scalars, lists of
/// scalars, and lists of mappings (`cameras`), each with the line it came from.
struct SettingsFile {
  enum Value {
    case scalar(String)
    case list([String])
    /// A list of mappings, each flattened on its own (the client's `cameras`).
    case records([[String: Entry]])
  }

  struct Entry {
    let value: Value
    let line: Int

    var isScalar: Bool {
      if case .scalar = value { return true }
      return false
    }
  }

  let path: String
  private(set) var entries: [String: Entry] = [:]

  init(path: String) throws(SettingsProblems) {
    self.path = path
    guard let data = FileManager.default.contents(atPath: path) else {
      throw SettingsProblems(["\(path): cannot read the file"])
    }
    guard let text = String(data: data, encoding: .utf8) else { throw SettingsProblems(["\(path): not UTF-8 text"]) }
    let root: Node?
    do { root = try Yams.compose(yaml: text) } catch {
      let oneLine = "\(error)".split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        .joined(separator: " ")
      throw SettingsProblems(["\(path): not valid YAML: \(oneLine)"])
    }
    guard let root else { return }  // an empty file sets nothing
    guard case .mapping(let mapping) = root else {
      throw SettingsProblems(["\(path): the top level must be a mapping of keys (like `listen: [\"127.0.0.1:50001\"]`)"])
    }
    var problems: [String] = []
    entries = Self.flatten(mapping, prefix: [], path: path, problems: &problems)
    if !problems.isEmpty { throw SettingsProblems(problems) }
  }

  private static func flatten(
    _ mapping: Node.Mapping, prefix: [String], path: String, problems: inout [String]
  ) -> [String: Entry] {
    var entries: [String: Entry] = [:]
    for (keyNode, valueNode) in mapping {
      let line = keyNode.mark?.line ?? 0
      guard let name = keyNode.string else {
        problems.append("\(path):\(line): a key must be a plain word")
        continue
      }
      let key = prefix + [SettingsKey.camel(name)]
      let dotted = key.joined(separator: ".")
      switch valueNode {
      case .scalar(let scalar):
        if scalar.style == .plain && (scalar.string == "~" || scalar.string == "null" || scalar.string.isEmpty) { continue }
        entries[dotted] = Entry(value: .scalar(scalar.string), line: line)
      case .mapping(let nested):
        entries.merge(flatten(nested, prefix: key, path: path, problems: &problems)) { first, _ in first }
      case .sequence(let sequence):
        let items = Array(sequence)
        if items.allSatisfy({ if case .scalar = $0 { true } else { false } }) {
          entries[dotted] = Entry(value: .list(items.compactMap(\.string)), line: line)
        } else if items.allSatisfy({ if case .mapping = $0 { true } else { false } }) {
          let records = items.compactMap { item -> [String: Entry]? in
            guard case .mapping(let record) = item else { return nil }
            return flatten(record, prefix: [], path: path, problems: &problems)
          }
          entries[dotted] = Entry(value: .records(records), line: line)
        } else {
          problems.append("\(path):\(line): \(dotted): a list must hold only plain values or only mappings")
        }
      case .alias:
        problems.append("\(path):\(line): \(dotted): YAML aliases are not supported here")
      }
    }
    return entries
  }
}

/// Every problem found, one line each; the programs print them and exit 2.
public struct SettingsProblems: Error, CustomStringConvertible {
  public let lines: [String]
  public init(_ lines: [String]) { self.lines = lines }
  public var description: String { lines.joined(separator: "\n") }
}

/// Keys are camelCase inside (`queue.maxBytesTotal`, as flags split: `--queue-max-bytes-total`);
/// files are written snake_case (`queue: {max_bytes_total: …}`), and either spelling is read.
enum SettingsKey {
  static func camel(_ word: String) -> String {
    let parts = word.split(separator: "_", omittingEmptySubsequences: true)
    guard parts.count > 1 else { return word }
    return String(parts[0]) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
  }

  static func snake(_ key: String) -> String {
    key.split(separator: ".", omittingEmptySubsequences: false).map { component in
      var out = ""
      for character in component {
        if character.isUppercase {
          out += "_" + character.lowercased()
        } else {
          out.append(character)
        }
      }
      return out
    }.joined(separator: ".")
  }
}
