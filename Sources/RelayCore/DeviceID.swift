/// A camera's name on the relay: 1–64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit,
/// so it is safe in file paths, metric labels and log lines.
public struct DeviceID: Hashable, Sendable, CustomStringConvertible {
  public static let maxLength = 64
  public let rawValue: String

  public init(validating value: String) throws(DeviceIDError) {
    guard !value.isEmpty else { throw .empty }
    guard value.utf8.count <= Self.maxLength else { throw .tooLong(value.utf8.count) }
    guard let first = value.unicodeScalars.first, Self.isAlphanumeric(first) else {
      throw .badFirstCharacter(value)
    }
    if let bad = value.unicodeScalars.first(where: { !Self.isAllowed($0) }) {
      throw .badCharacter(value, bad)
    }
    self.rawValue = value
  }

  public var description: String { rawValue }

  private static func isAlphanumeric(_ c: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
  }

  private static func isAllowed(_ c: Unicode.Scalar) -> Bool {
    isAlphanumeric(c) || c == "." || c == "_" || c == "-"
  }
}

public enum DeviceIDError: Error, Equatable, CustomStringConvertible {
  case empty
  case tooLong(Int)
  case badFirstCharacter(String)
  case badCharacter(String, Unicode.Scalar)

  public var description: String {
    let rule = "a device id is 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
    switch self {
    case .empty: return "device id is missing: \(rule)"
    case .tooLong(let n): return "device id is \(n) characters long: \(rule)"
    case .badFirstCharacter(let v): return "device id \"\(v)\" must start with a letter or digit: \(rule)"
    case .badCharacter(let v, let c): return "device id \"\(v)\" contains \"\(c)\": \(rule)"
    }
  }
}
