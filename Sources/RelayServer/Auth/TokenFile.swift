import Crypto
import Foundation

/// The `--tokens` file, parsed. One rule per line, `#` starts a comment:
///
///     TOKEN        ROLES [DEVICES]     a bearer token (or sha256:HEX, the hex SHA-256 of one)
///     cert:NAME    ROLES [DEVICES]     a client certificate whose CN or a DNS SAN is NAME (mTLS)
///
/// ROLES is a comma list (publish, consume, annotate, control, metrics), DEVICES a comma list of
/// patterns (`cam-*`); without DEVICES the rule covers every device. Only SHA-256 digests of tokens are
/// kept, and a lookup compares against every one in constant time.
public struct TokenFile: Sendable {
  public struct Problem: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
  }

  private struct TokenRule: Sendable {
    let digest: [UInt8]
    let grant: Grant
  }

  private var tokens: [TokenRule] = []
  private var certificates: [String: Grant] = [:]

  public var tokenCount: Int { tokens.count }
  public var certificateCount: Int { certificates.count }

  public init() {}

  /// Every problem, each with its line number; nothing is half-applied.
  public struct Problems: Error {
    public let all: [Problem]
  }

  public static func parse(_ text: String) -> Result<TokenFile, Problems> {
    var file = TokenFile()
    var problems: [Problem] = []
    var seen = Set<String>()
    for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let number = index + 1
      let line = rawLine.prefix { $0 != "#" }.trimmingCharacters(in: .whitespaces)
      if line.isEmpty { continue }
      let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
      guard (2...3).contains(fields.count) else {
        problems.append(Problem(line: number, message: "expected TOKEN ROLES [DEVICES], found \(fields.count) fields"))
        continue
      }
      let roles: Set<Role>
      switch Role.parseList(fields[1]) {
      case .success(let parsed): roles = parsed
      case .failure(let problem):
        problems.append(Problem(line: number, message: problem.description))
        continue
      }
      let devices = fields.count == 3 ? fields[2].split(separator: ",").map { DevicePattern(String($0)) } : []
      let subject = fields[0]
      guard seen.insert(subject).inserted else {
        problems.append(Problem(line: number, message: "the same token or certificate name is listed twice"))
        continue
      }
      if subject.hasPrefix("cert:") {
        let name = String(subject.dropFirst("cert:".count))
        guard !name.isEmpty else {
          problems.append(Problem(line: number, message: "cert: needs a name (the certificate's CN or a DNS SAN)"))
          continue
        }
        file.certificates[name] = Grant(identity: "cert:\(name)", roles: roles, devices: devices)
      } else if subject.hasPrefix("sha256:") {
        guard let digest = Self.bytes(hex: subject.dropFirst("sha256:".count)), digest.count == 32 else {
          problems.append(Problem(line: number, message: "sha256: needs 64 hex digits"))
          continue
        }
        file.tokens.append(TokenRule(digest: digest, grant: Grant(identity: Self.identity(digest), roles: roles, devices: devices)))
      } else {
        let digest = Self.digest(subject)
        file.tokens.append(TokenRule(digest: digest, grant: Grant(identity: Self.identity(digest), roles: roles, devices: devices)))
      }
    }
    return problems.isEmpty ? .success(file) : .failure(Problems(all: problems))
  }

  /// The grant of a bearer token, if it is listed. Every rule is compared, each in constant time, so
  /// the time taken says nothing about which tokens exist.
  public func grant(forToken token: String) -> Grant? {
    let digest = Self.digest(token)
    var found: Grant?
    for rule in tokens where Self.constantTimeEqual(rule.digest, digest) { found = rule.grant }
    return found
  }

  /// The grant of the first listed name a client certificate carries.
  public func grant(forCertificateNames names: [String]) -> Grant? {
    names.lazy.compactMap { certificates[$0] }.first
  }

  /// Logs name a token by the start of its digest, never by the token.
  private static func identity(_ digest: [UInt8]) -> String {
    "token sha256:" + digest.prefix(4).map { String(format: "%02x", $0) }.joined()
  }

  static func digest(_ token: String) -> [UInt8] { Array(SHA256.hash(data: Data(token.utf8))) }

  private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
  }

  private static func bytes(hex: some StringProtocol) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count.isMultiple(of: 2) else { return nil }
    var bytes: [UInt8] = []
    for index in stride(from: 0, to: digits.count, by: 2) {
      guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else { return nil }
      bytes.append(byte)
    }
    return bytes
  }
}

