/// A "HOST:PORT" address as given on a command line ("[::1]:50001" for IPv6).
public struct HostPort: Equatable, Sendable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  public init?(_ value: String) {
    guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
      (0...65535).contains(port)
    else { return nil }
    var host = String(value[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { return nil }
    self.init(host: host, port: port)
  }

  public var isLoopback: Bool { host == "localhost" || host == "::1" || host.hasPrefix("127.") }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
