import RelayCore

/// What one relay-client publish run does.
public struct PublisherConfiguration: Sendable {
  public var server: HostPort
  public var device: DeviceID
  public var source: SourceSpec
  /// TLS and the bearer token.
  public var security = ClientSecurity()
  /// A connection shared with other publishers (a gateway's cameras); nil: a fresh one per attempt.
  public var connection: SharedConnection?
  /// Its own status line once a second (a gateway prints one table for all its cameras instead).
  public var reportsStatus = true
  /// For protocols that carry pictures: the capture decodes to these (nil: packets as captured).
  public var pictures: PictureRequest?
  /// Stop after this many frames captured (and acknowledged).
  public var maxFrames: Int?
  /// Most frames in flight; the server may ask for fewer.
  public var window = 32
  /// Most unacknowledged bytes in flight (at least one frame is always allowed).
  public var maxInFlightBytes = 64 << 20
  /// Largest gRPC message either way.
  public var maxMessageBytes = 64 << 20
  /// After Ctrl-C, how long to wait for the last acks.
  public var stopDrainTimeout: Duration = .seconds(2)
  /// After the source ends (file, --frames, --duration), how long to wait for the last acks.
  public var endDrainTimeout: Duration = .seconds(15)
  /// Frames captured and not yet acknowledged (what a reconnect resends). Past either bound whole GOPs
  /// are dropped, oldest first. The defaults hold 30 s of a 1080p30 H.264 camera with room to spare.
  public var queueMaxBytes = 128 << 20
  public var queueMaxSeconds: Double = 60
  /// Keep the queue on disk too (`Spool`): then the spool's bound is the queue's, queueMaxBytes only
  /// bounds what stays in memory, and queueMaxSeconds does not apply.
  public var spool: Spool.Configuration?
  /// A stream with frames in flight and no ack for this long is dead (a silent partition).
  public var ackTimeout: Duration = .seconds(3)
  /// A connection attempt with no `accepted` within this long is abandoned.
  public var helloTimeout: Duration = .seconds(2)
  public var reconnectBackoff = Backoff(initialSeconds: 0.25, maximumSeconds: 2)
  public var cameraBackoff = Backoff(initialSeconds: 0.5, maximumSeconds: 30)
  public var clientVersion = "0.1.0"

  public init(server: HostPort, device: DeviceID, source: SourceSpec) {
    self.server = server
    self.device = device
    self.source = source
  }
}
