import Annotations
import Foundation
import LogOutput
import Logging
import RelayCore
import RelayServer
import Settings

/// relay-server's settings, read from flags, FRAMERELAY_… environment variables and the --config file
/// (in that order of precedence), checked, and turned into a ServerConfiguration. Every problem is
/// collected; the command prints them, one per line, and exits 2.
struct ServerSettings {
  let configuration: ServerConfiguration
  let logLevel: Logger.Level
  let logFormat: LogFormat
  let yaml: String

  static func read(_ flags: RelayServerCommand) throws(SettingsProblems) -> ServerSettings {
    let settings = try Settings(file: flags.config)
    let defaults = ServerConfiguration()
    var configuration = ServerConfiguration()

    configuration.listen = settings.strings("listen", flag: flags.listen, default: defaults.listen.map(\.description))
      .compactMap { text in
        guard let address = HostPort(text) else {
          settings.problem("listen", "\"\(text)\" is not HOST:PORT (for example 127.0.0.1:50001 or [::1]:50001)")
          return nil
        }
        return address
      }
    configuration.metricsListen = settings.value(
      "metrics.listen", flag: flags.metricsListen, default: nil as HostPort?, allowed: "HOST:PORT (for example 127.0.0.1:9101)",
      shown: { $0?.description ?? "~" }
    ) { HostPort($0) }

    // TLS and who may do what.
    let insecure = settings.bool("insecure", flag: flags.insecure, default: false)
    let tlsCert = settings.string("tls.cert", flag: flags.tlsCert, default: nil)
    let tlsKey = settings.string("tls.key", flag: flags.tlsKey, default: nil)
    let tlsClientCA = settings.string("tls.clientCa", flag: flags.tlsClientCa, default: nil)
    let reloadSeconds = settings.double("tls.reloadSeconds", flag: flags.tlsReloadSeconds, default: 10)
    configuration.tokensFile = settings.string("tokens", flag: flags.tokens, default: nil)
    configuration.jwtPublicKeyFile = settings.string("jwt.publicKey", flag: flags.jwtPublicKey, default: nil)
    if (tlsCert == nil) != (tlsKey == nil) {
      settings.problem("tls", "tls.cert (--tls-cert) and tls.key (--tls-key) go together: the certificate (chain) and its private key, both PEM")
    }
    if let tlsCert, let tlsKey {
      configuration.tls = .init(certificateChain: tlsCert, privateKey: tlsKey, clientCA: tlsClientCA)
      configuration.tls?.reloadInterval = .milliseconds(Int(reloadSeconds * 1000))
    } else if tlsClientCA != nil {
      settings.problem("tls.clientCa", "requires TLS: set tls.cert and tls.key too")
    }

    // Limits and tuning.
    configuration.maxFrameBytes = settings.int("maxFrameBytes", flag: flags.maxFrameBytes, default: defaults.maxFrameBytes)
    configuration.ringMaxBytes = settings.int("ring.maxBytes", flag: flags.ringMaxBytes, default: defaults.ringMaxBytes)
    configuration.ringMaxSeconds = settings.double("ring.maxSeconds", flag: flags.ringMaxSeconds, default: defaults.ringMaxSeconds)
    configuration.maxDevices = settings.int("maxDevices", flag: flags.maxDevices, default: defaults.maxDevices)
    configuration.maxConnections = settings.int(
      "maxConnections", flag: flags.maxConnections, default: defaults.maxConnections)
    configuration.maxStreamsPerConnection = settings.int(
      "maxStreamsPerConnection", flag: flags.maxStreamsPerConnection, default: defaults.maxStreamsPerConnection)
    configuration.publishWindow = settings.int("window", flag: flags.window, default: defaults.publishWindow)
    configuration.decoderIdleTimeout = .milliseconds(Int(1000 * settings.double(
      "decoder.idleSeconds", flag: flags.decoderIdleSeconds, default: Double(defaults.decoderIdleTimeout.components.seconds))))
    configuration.coldStartWait = .milliseconds(settings.int(
      "coldStartWaitMs", flag: flags.coldStartWaitMs, default: 1000, allowed: 0...60_000))
    configuration.http2MaxFrameSize = settings.int(
      "http2.maxFrameSize", flag: flags.http2MaxFrameSize, default: defaults.http2MaxFrameSize, allowed: 16384...16_777_215)
    configuration.http2WindowSize = settings.int(
      "http2.windowSize", flag: flags.http2WindowSize, default: defaults.http2WindowSize, allowed: 65535...Int(Int32.max))
    configuration.handlerThreads = settings.value(
      "handlerThreads", flag: flags.handlerThreads, default: defaults.handlerThreads,
      allowed: HandlerThreads.allCases.map(\.rawValue).joined(separator: " or "), shown: \.rawValue
    ) { HandlerThreads(rawValue: $0) }

    // Annotations.
    configuration.dataDirectory = settings.string("dataDir", flag: flags.dataDir, default: defaults.dataDirectory)!
    configuration.annotationsUpstream = settings.value(
      "annotations.upstream", flag: flags.annotationsUpstream, default: nil as UpstreamAddress?,
      allowed: "grpc://HOST:PORT, grpcs://HOST:PORT or http(s)://HOST[:PORT]/PATH", shown: { $0?.description ?? "~" }
    ) { try? UpstreamAddress(parsing: $0) }
    configuration.annotationsUpstreamCA = settings.string("annotations.upstreamCa", flag: flags.annotationsUpstreamCa, default: nil)
    let tokenFile = settings.string("annotations.upstreamTokenFile", flag: flags.annotationsUpstreamTokenFile, default: nil)
    let secretFile = settings.string("annotations.secretFile", flag: flags.annotationsSecretFile, default: nil)
    configuration.annotationsForwarding.batchSize = settings.int(
      "annotations.batchSize", flag: flags.annotationsBatchSize, default: defaults.annotationsForwarding.batchSize)
    configuration.annotationsForwarding.batchWait = .milliseconds(settings.int(
      "annotations.batchWaitMs", flag: flags.annotationsBatchWaitMs, default: 200, allowed: 0...Int.max))
    let retryMaxMs = settings.int("annotations.retryMaxMs", flag: flags.annotationsRetryMaxMs, default: 30_000)
    configuration.annotationsForwarding.backoff = Backoff(
      initialSeconds: min(0.25, Double(retryMaxMs) / 1000), maximumSeconds: Double(retryMaxMs) / 1000)
    configuration.annotationsTimeout = .milliseconds(settings.int(
      "annotations.timeoutMs", flag: flags.annotationsTimeoutMs, default: 5000))
    let upstream = configuration.annotationsUpstream
    if configuration.annotationsUpstreamCA != nil, !(upstream?.isTLS ?? false) {
      settings.problem("annotations.upstreamCa", "verifies a TLS upstream: it needs a grpcs:// or https:// annotations.upstream")
    }
    if secretFile != nil, !(upstream?.isHTTP ?? false) {
      settings.problem("annotations.secretFile", "signs HTTP upstream requests: it needs an http(s):// annotations.upstream")
    }

    // Readers.
    for endpoint in settings.strings("rtmp.endpoint", flag: flags.rtmpEndpoint, default: []) {
      let parts = endpoint.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, !parts[0].isEmpty, parts[1].lowercased().hasPrefix("rtmp") else {
        settings.problem("rtmp.endpoint", "\"\(endpoint)\" is not DEVICE=rtmp://HOST[:PORT]/APP/KEY")
        continue
      }
      configuration.rtmpEndpoints[parts[0]] = parts[1]
    }
    configuration.recordSegmentSeconds = settings.double(
      "record.segmentSeconds", flag: flags.recordSegmentSeconds, default: defaults.recordSegmentSeconds)
    configuration.recordMaxAgeSeconds = settings.double(
      "record.maxAgeSeconds", flag: flags.recordMaxAgeSeconds, default: defaults.recordMaxAgeSeconds)
    configuration.recordMaxBytes = settings.int("record.maxBytes", flag: flags.recordMaxBytes, default: defaults.recordMaxBytes)

    // The other protocols.
    let shape = settings.string("simple.shape", flag: flags.simpleShape, default: "480x640")!
    let pixelFormat = settings.string("simple.pixelFormat", flag: flags.simplePixelFormat, default: nil)
    switch PictureShape.parse(shape, pixelFormat: pixelFormat) {
    case .success(let parsed): configuration.simpleShape = parsed
    case .failure(let problem): settings.problem("simple.shape", "\(problem)")
    }
    configuration.simpleDefaultDevice = device(settings, "simple.defaultDevice", flags.simpleDefaultDevice, defaults.simpleDefaultDevice)
    configuration.avaDefaultDevice = device(settings, "ava.defaultDevice", flags.avaDefaultDevice, defaults.avaDefaultDevice)
    let credentials = settings.string("ava.basicCredentials", flag: flags.avaBasicCredentials, default: nil)

    let logLevel = settings.value(
      "log.level", flag: flags.logLevel, default: Logger.Level.info,
      allowed: "one of trace, debug, info, notice, warning, error, critical"
    ) { Logger.Level(rawValue: $0.lowercased()) }
    let logFormat = settings.value("log.format", flag: flags.logFormat, default: LogFormat.human, allowed: "human or json") {
      LogFormat(rawValue: $0.lowercased())
    }

    // Files named must exist (reading their contents comes after every key is known).
    for (key, path) in [("tls.cert", tlsCert), ("tls.key", tlsKey), ("tls.clientCa", tlsClientCA),
                        ("tokens", configuration.tokensFile), ("jwt.publicKey", configuration.jwtPublicKeyFile),
                        ("annotations.upstreamCa", configuration.annotationsUpstreamCA),
                        ("annotations.upstreamTokenFile", tokenFile), ("annotations.secretFile", secretFile),
                        ("ava.basicCredentials", credentials)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) {
        settings.problem(key, "\(path): no such readable file")
      }
    }
    try settings.finish()

    configuration.annotationsUpstreamToken = try tokenFile.map { path throws(SettingsProblems) in
      try firstLine(of: path, key: "annotations.upstreamTokenFile", what: "token")
    }
    configuration.annotationsSecret = try secretFile.map { path throws(SettingsProblems) in
      try firstLine(of: path, key: "annotations.secretFile", what: "secret")
    }
    configuration.avaBasicCredentials = try credentials.map { path throws(SettingsProblems) in try basicCredentials(in: path) }

    // Nothing open by accident: a non-loopback address needs TLS and authentication, or --insecure.
    let exposed = (configuration.listen + [configuration.metricsListen].compactMap { $0 }).filter { !$0.isLoopback }
    if let address = exposed.first, !insecure {
      if configuration.tls == nil {
        throw SettingsProblems([
          "refusing to serve \(address) without TLS: add --tls-cert and --tls-key (see docs/security.md), or --insecure to accept plaintext on a non-loopback address"
        ])
      }
      if !configuration.authenticationConfigured {
        throw SettingsProblems([
          "refusing to serve \(address) without authentication: add --tokens, --jwt-public-key or --tls-client-ca (see docs/security.md), or --insecure to let anyone who reaches it in"
        ])
      }
    }
    configuration.insecure = !exposed.isEmpty && (configuration.tls == nil || !configuration.authenticationConfigured)
    return ServerSettings(configuration: configuration, logLevel: logLevel, logFormat: logFormat, yaml: settings.yaml())
  }

  private static func device(_ settings: Settings, _ key: String, _ flag: String?, _ fallback: String) -> String {
    settings.value(key, flag: flag, default: fallback, allowed: "a device id (letters, digits, - _ . : up to 128)") {
      (try? DeviceID(validating: $0))?.rawValue
    }
  }

  private static func firstLine(of path: String, key: String, what: String) throws(SettingsProblems) -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8),
      let line = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }),
      !line.isEmpty
    else { throw SettingsProblems(["\(key): \(path) holds no \(what)"]) }
    return line
  }

  /// The `user:password` lines of ava.basicCredentials (blank lines and # comments skipped).
  static func basicCredentials(in path: String) throws(SettingsProblems) -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw SettingsProblems(["ava.basicCredentials: cannot read \(path)"])
    }
    var pairs: [String] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let entry = line.trimmingCharacters(in: .whitespaces)
      if entry.isEmpty || entry.hasPrefix("#") { continue }
      guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
        throw SettingsProblems(["ava.basicCredentials: \(path) line \(number + 1) is not user:password"])
      }
      pairs.append(entry)
    }
    guard !pairs.isEmpty else { throw SettingsProblems(["ava.basicCredentials: \(path) holds no user:password line"]) }
    return pairs
  }
}
