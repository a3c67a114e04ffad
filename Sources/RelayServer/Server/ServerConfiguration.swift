import Annotations
import RelayCore

/// Everything relay-server can be told, with the defaults a small deployment wants.
public struct ServerConfiguration: Sendable {
  /// gRPC listen addresses; every service is served on each. 50001 is the port Chrysalis consumers
  /// hard-code.
  public var listen = [HostPort(host: "127.0.0.1", port: 50001)]
  /// Largest Publish frame and largest Image response, in bytes. 1080p bgr24 is 6,220,800.
  public var maxFrameBytes = 16 << 20
  /// Per-device packet ring bounds.
  public var ringMaxBytes = 64 << 20
  public var ringMaxSeconds: Double = 30
  public var maxDevices = 64
  /// TCP connections served at once on all gRPC listeners; calls on more are refused (ConnectionLimit).
  public var maxConnections = 1024
  /// HTTP/2 streams (calls) open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). Each
  /// stream can hold one response the client does not read: this and maxConnections bound them.
  public var maxStreamsPerConnection = 100
  /// Frames a publisher may have unacknowledged.
  public var publishWindow = 32
  /// A live decoder with no consumer for this long stops.
  public var decoderIdleTimeout: Duration = .seconds(10)
  /// How long VideoLatestImage waits for a frame newer than the consumer's last before answering empty.
  public var latestFrameWait: Duration = .milliseconds(48)
  /// How long the first VideoLatestImage on a cold stream waits for its newest picture to be decoded.
  public var coldStartWait: Duration = .seconds(1)
  /// Consumers remembered for VideoLatestImage cursors (oldest forgotten first).
  public var maxConsumers = 1024
  /// VideoBufferedImage calls decoding at once (each on a thread of its own).
  public var maxReplays = 8
  /// HTTP/2 tuning for video (see RelayServer.transportConfig).
  public var http2MaxFrameSize = 1 << 20
  public var http2WindowSize = 16 << 20
  /// Where gRPC handlers run: on the event loops their messages arrive on (no hop per message), or on
  /// Swift's cooperative pool (see EventLoopTaskExecutor).
  public var handlerThreads: HandlerThreads = .eventLoops
  /// Where to serve Prometheus metrics (`GET /metrics`); nil for nowhere.
  public var metricsListen: HostPort?
  /// How long a graceful shutdown may take before what is left is cancelled.
  public var shutdownTimeout: Duration = .seconds(10)

  /// Where the annotations outbox and recordings live.
  public var dataDirectory = "relay-data"
  /// Where annotations are forwarded; nil keeps them in the outbox.
  public var annotationsUpstream: UpstreamAddress?
  /// PEM CA that signed a TLS upstream's certificate; nil: the system trust store.
  public var annotationsUpstreamCA: String?
  /// Bearer token for a gRPC upstream that checks tokens.
  public var annotationsUpstreamToken: String?
  /// Signs HTTP upstream requests when set.
  public var annotationsSecret: String?
  public var annotationsForwarding = AnnotationForwarder.Settings()
  /// Per upstream request.
  public var annotationsTimeout: Duration = .seconds(5)

  /// The minimal protocol's frames: their shape and pixel format (the original sends 480x640 gray),
  /// and the device of a call without `x-device-id` metadata.
  public var simpleShape = PictureShape(height: 480, width: 640, pixelFormat: .gray)
  public var simpleDefaultDevice = "simple"

  /// AVA sessions whose descriptor names no usable device go to this device.
  public var avaDefaultDevice = "ava"
  /// `user:password` pairs an AVA sender must present (`x-ms-authentication: Basic …`); nil: no check.
  public var avaBasicCredentials: [String]?

  /// TLS on every listen address and the HTTP side; nil: plaintext.
  public var tls: TLSFiles?
  /// `--tokens`: bearer tokens and certificate names with their roles (see TokenFile).
  public var tokensFile: String?
  /// `--jwt-public-key`: bearer JWTs signed by this key are accepted too.
  public var jwtPublicKeyFile: String?
  /// A non-loopback address is served without TLS or without authentication (--insecure): warned about
  /// at start and hourly, and shown as framerelay_insecure 1.
  public var insecure = false

  /// Proxy passthrough targets: device id (or `*`) → RTMP URL (`{device}` is replaced by the id).
  public var rtmpEndpoints: [String: String] = [:]
  /// Recording segments and retention.
  public var recordSegmentSeconds: Double = 60
  public var recordMaxAgeSeconds: Double = 86_400
  public var recordMaxBytes = 10 << 30

  public init() {}

  public struct TLSFiles: Sendable {
    /// PEM; the server's certificate first, then any intermediates.
    public var certificateChain: String
    public var privateKey: String
    /// Client certificates must be signed by this CA (mTLS); nil: none asked for.
    public var clientCA: String?
    /// How often the files are read again (new connections see a changed certificate; live ones stay).
    public var reloadInterval: Duration = .seconds(10)

    public init(certificateChain: String, privateKey: String, clientCA: String? = nil) {
      self.certificateChain = certificateChain
      self.privateKey = privateKey
      self.clientCA = clientCA
    }
  }

  /// Tokens, JWT or client certificates: callers must authenticate.
  public var authenticationConfigured: Bool { tokensFile != nil || jwtPublicKeyFile != nil || tls?.clientCA != nil }

  var recordingSettings: Recordings.Settings {
    .init(segmentSeconds: recordSegmentSeconds, maxAgeSeconds: recordMaxAgeSeconds, maxBytes: recordMaxBytes)
  }

  var ringLimits: PacketRing.Limits { .init(maxBytes: ringMaxBytes, maxSeconds: ringMaxSeconds) }
}

/// Where gRPC handlers run (`--handler-threads`).
public enum HandlerThreads: String, Sendable, CaseIterable {
  case eventLoops = "event-loops"
  case pool
}
