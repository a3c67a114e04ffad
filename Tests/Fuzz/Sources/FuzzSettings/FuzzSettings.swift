// Settings files (--config): an input is the whole YAML file. It is written to /dev/shm and read by
// Settings (Yams, flattening, swift-configuration's merge), then every key is read the way
// relay-server's ServerSettings.read and relay-client's ClientSettings.read do (same keys, same typed
// reads and value parsers: HostPort, PictureShape, UpstreamAddress, DeviceID), the client's `cameras`
// list record by record, then finish() (unknown keys with the nearest known one) and yaml() (what
// --print-config prints). Problems are answers; only crashes and hangs are findings.
//
// ServerSettings and ClientSettings live in the executable targets, which another package cannot
// import; the reads below follow them key for key (relay-server/Sources/ServerSettings.swift,
// relay-client/Sources/{ClientSettings,RunOptions,SecurityOptions,SourceOptions}.swift).
import Annotations
import Foundation
import CFuzzDriver
import FuzzSupport
import RelayCore
import Settings

private let file = ScratchFile("settings.yaml")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  file.write(Fuzz.data(start, count))
  for reads in [readServer, readClient] {
    do {
      let settings = try Settings(file: file.path, environment: [:])
      reads(settings)
      do { try settings.finish() } catch {
        Fuzz.require(!error.lines.isEmpty, "finish threw no problem")
      }
      _ = settings.yaml()
    } catch {
      Fuzz.require(!error.lines.isEmpty, "a file refused with no problem")
    }
  }
  return 0
}

private func device(_ settings: Settings, _ key: String) {
  _ = settings.value(key, flag: nil, default: "d", allowed: "a device id") { (try? DeviceID(validating: $0))?.rawValue }
}

/// ServerSettings.read, key for key.
private func readServer(_ settings: Settings) {
  for text in settings.strings("listen", flag: [], default: ["127.0.0.1:50001"]) where HostPort(text) == nil {
    settings.problem("listen", "\"\(text)\" is not HOST:PORT")
  }
  _ = settings.value("metrics.listen", flag: nil, default: nil as HostPort?, allowed: "HOST:PORT", shown: { $0?.description ?? "~" }) {
    HostPort($0)
  }
  _ = settings.bool("insecure", flag: nil, default: false)
  let cert = settings.string("tls.cert", flag: nil, default: nil)
  let key = settings.string("tls.key", flag: nil, default: nil)
  _ = settings.string("tls.clientCa", flag: nil, default: nil)
  let reload = settings.double("tls.reloadSeconds", flag: nil, default: 10)
  if cert != nil, key != nil { _ = Duration.milliseconds(Int(reload * 1000)) }
  _ = settings.string("tokens", flag: nil, default: nil)
  _ = settings.string("jwt.publicKey", flag: nil, default: nil)
  _ = settings.int("maxFrameBytes", flag: nil, default: 16 << 20)
  _ = settings.int("ring.maxBytes", flag: nil, default: 64 << 20)
  _ = settings.double("ring.maxSeconds", flag: nil, default: 30)
  _ = settings.int("maxDevices", flag: nil, default: 64)
  _ = settings.int("maxConnections", flag: nil, default: 1024)
  _ = settings.int("window", flag: nil, default: 32)
  _ = Duration.milliseconds(Int(1000 * settings.double("decoder.idleSeconds", flag: nil, default: 10)))
  _ = Duration.milliseconds(settings.int("coldStartWaitMs", flag: nil, default: 1000, allowed: 0...60_000))
  _ = settings.int("http2.maxFrameSize", flag: nil, default: 1 << 20, allowed: 16384...16_777_215)
  _ = settings.int("http2.windowSize", flag: nil, default: 16 << 20, allowed: 65535...Int(Int32.max))
  _ = settings.int("maxStreamsPerConnection", flag: nil, default: 100)
  _ = settings.value("handlerThreads", flag: nil, default: "event-loops", allowed: "event-loops or pool") {
    ["event-loops", "pool"].contains($0) ? $0 : nil
  }
  _ = settings.string("dataDir", flag: nil, default: "relay-data")
  let upstream = settings.value(
    "annotations.upstream", flag: nil, default: nil as UpstreamAddress?, allowed: "an upstream URL", shown: { $0?.description ?? "~" }
  ) { try? UpstreamAddress(parsing: $0) }
  if settings.string("annotations.upstreamCa", flag: nil, default: nil) != nil, !(upstream?.isTLS ?? false) {
    settings.problem("annotations.upstreamCa", "needs a TLS upstream")
  }
  _ = settings.string("annotations.upstreamTokenFile", flag: nil, default: nil)
  if settings.string("annotations.secretFile", flag: nil, default: nil) != nil, !(upstream?.isHTTP ?? false) {
    settings.problem("annotations.secretFile", "needs an HTTP upstream")
  }
  _ = settings.int("annotations.batchSize", flag: nil, default: 100)
  _ = Duration.milliseconds(settings.int("annotations.batchWaitMs", flag: nil, default: 200, allowed: 0...Int.max))
  let retryMaxMs = settings.int("annotations.retryMaxMs", flag: nil, default: 30_000)
  _ = Backoff(initialSeconds: min(0.25, Double(retryMaxMs) / 1000), maximumSeconds: Double(retryMaxMs) / 1000)
  _ = Duration.milliseconds(settings.int("annotations.timeoutMs", flag: nil, default: 5000))
  for endpoint in settings.strings("rtmp.endpoint", flag: [], default: []) {
    let parts = endpoint.split(separator: "=", maxSplits: 1).map(String.init)
    if !(parts.count == 2 && !parts[0].isEmpty && parts[1].lowercased().hasPrefix("rtmp")) {
      settings.problem("rtmp.endpoint", "\"\(endpoint)\" is not DEVICE=rtmp://…")
    }
  }
  _ = settings.double("record.segmentSeconds", flag: nil, default: 60)
  _ = settings.double("record.maxAgeSeconds", flag: nil, default: 86_400)
  _ = settings.int("record.maxBytes", flag: nil, default: 10 << 30)
  let shape = settings.string("simple.shape", flag: nil, default: "480x640")!
  let pixelFormat = settings.string("simple.pixelFormat", flag: nil, default: nil)
  if case .failure(let problem) = PictureShape.parse(shape, pixelFormat: pixelFormat) {
    settings.problem("simple.shape", "\(problem)")
  }
  device(settings, "simple.defaultDevice")
  device(settings, "ava.defaultDevice")
  _ = settings.string("ava.basicCredentials", flag: nil, default: nil)
  _ = settings.value("log.level", flag: nil, default: "info", allowed: "a level") { $0.lowercased() }
  _ = settings.value("log.format", flag: nil, default: "human", allowed: "human or json") { ["human", "json"].contains($0.lowercased()) ? $0 : nil }
}

/// ClientSettings.read with RunOptions, SecurityOptions and SourceReading, key for key.
private func readClient(_ settings: Settings) {
  let server = settings.value("server", flag: nil, default: nil as HostPort?, allowed: "HOST:PORT", shown: { $0?.description ?? "~" }) {
    HostPort($0)
  }
  if server == nil { settings.problem("server", "missing") }
  _ = settings.bool("tls", flag: nil, default: false)
  for key in ["tls.ca", "tls.serverName", "tls.cert", "tls.key", "tokenFile"] { _ = settings.string(key, flag: nil, default: nil) }
  _ = settings.int("frames", flag: nil, default: 0, allowed: 0...Int.max)
  _ = settings.double("duration", flag: nil, default: 0, atLeast: 0, orMore: true)
  _ = settings.int("window", flag: nil, default: 32)
  _ = settings.int("queue.maxBytes", flag: nil, default: 256 << 20)
  _ = settings.double("queue.maxSeconds", flag: nil, default: 60)
  _ = settings.int("queue.maxBytesTotal", flag: nil, default: 0, allowed: 0...Int.max)
  _ = settings.int("spool.maxBytes", flag: nil, default: 4 << 30, allowed: (1 << 20)...Int.max)
  _ = settings.string("spool.dir", flag: nil, default: nil)
  _ = settings.value("log.level", flag: nil, default: "info", allowed: "a level") { $0.lowercased() }
  _ = settings.value("metrics.listen", flag: nil, default: nil as HostPort?, allowed: "HOST:PORT", shown: { $0?.description ?? "~" }) {
    HostPort($0)
  }
  _ = settings.value("log.format", flag: nil, default: "human", allowed: "human or json") { $0.lowercased() }
  let records = settings.records("cameras")
  if records.isEmpty {
    if let device = settings.string("device", flag: nil, default: nil), (try? DeviceID(validating: device)) == nil {
      settings.problem("device", "\"\(device)\" is not a device id")
    }
    for key in sourceKeys.sorted() { _ = settings.string(key, flag: nil, default: nil) }
  } else {
    var seen = Set<String>()
    for record in records {
      guard let device = record.string("device") else {
        record.problem("device: missing")
        record.finish(knownFields: sourceKeys.union(["device"]))
        continue
      }
      for key in sourceKeys.sorted() { _ = record.string(key, masked: key == "rtsp" ? { "masked:\($0.count)" } : nil) }
      record.finish(knownFields: sourceKeys.union(["device"]))
      guard let id = try? DeviceID(validating: device) else { record.problem("device", "not a device id"); continue }
      if !seen.insert(id.rawValue).inserted { record.problem("device", "\(id) is listed twice") }
    }
  }
  _ = settings.string("shape", flag: nil, default: nil)
  _ = settings.string("pixelFormat", flag: nil, default: nil)
  _ = settings.string("fps", flag: nil, default: nil)
}

/// SourceReading.keys (relay-client/Sources/SourceOptions.swift).
private let sourceKeys: Set<String> = [
  "testPattern", "size", "fps", "v4l2", "inputFormat", "encoder", "bitrate", "gop", "rtsp", "rtspTransport",
  "rtspStallSeconds", "file", "pace", "loop", "synthetic",
]

@_cdecl("FuzzSettings_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
