import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Media
import RelayCore
import RelayProtocol

/// What `relay-client ava` sends and how, beyond the publisher's own settings.
public struct AVASenderSettings: Sendable {
  public enum Encoding: String, Sendable, CaseIterable { case raw, jpg, png, bmp }

  public var encoding: Encoding = .raw
  /// RAW only: FFmpeg's name of one of AVA's pixel formats.
  public var pixelFormat = "rgb24"
  public var sharedMemory = false
  /// The shared-memory file's size; nil: room for 16 frames.
  public var sharedMemoryBytes: Int?
  public var extensionConfiguration = ""
  public var graphInstanceName = "relay-client"
  /// The whole `x-ms-authentication` value ("Basic …"), nil to send none.
  public var authentication: String?
  /// A sample whose ack has not come after this long is counted lost and its region reclaimed.
  public var ackTimeout: Duration = .seconds(5)
  /// Called with each ack's inference results (on the stream's task; keep it quick).
  public var onInferences: @Sendable (InferenceResults) -> Void = { _ in }

  public init() {}
}

/// The inference results an extension put on one ack.
public struct InferenceResults: Sendable {
  /// The sample's timestamp, in the descriptor's timescale (90000).
  public var timestamp: UInt64
  public var captureTimeMs: Int64
  public var inferences: [AVAInference]
  /// The frames' size, for boxes in pixels.
  public var frameSize: (width: Int, height: Int)?
}

/// The extension could not take the session (it refused it, or is full): not our frames' fault, so
/// the publisher tries again with back-off.
struct AVASessionRefused: Error, CustomStringConvertible {
  let description: String
}

/// One `MediaGraphExtension/ProcessMediaStream` session as the AVA side: our descriptor (message 1),
/// the extension's answer (recognised by its payload, whatever its numbers), then one sample per frame
/// (messages 2, 3, …), embedded or through shared memory; an ack for message n acknowledges every
/// sample up to n. Samples without an ack after `ackTimeout` are counted lost and their regions reused.
struct AVASender: FrameSender {
  static let timescale: UInt32 = 90_000

  let configuration: PublisherConfiguration
  let settings: AVASenderSettings
  let logger: Logger
  /// Every shared-memory file this run created, unlinked at the end even if an abandoned attempt
  /// still holds its mapping.
  private let created = Locked<[String]>([])

  init(configuration: PublisherConfiguration, settings: AVASenderSettings, logger: Logger) {
    self.configuration = configuration
    self.settings = settings
    self.logger = logger
  }

  func finish() {
    for name in created.value { unlink("/dev/shm/\(name)") }
  }

  /// What both sides of one attempt share.
  private struct Session {
    var nextMessage: UInt64 = 2
    /// Message number → (queue sequence, sample timestamp, capture time), in flight, oldest first.
    var inFlight: [(message: UInt64, sequence: UInt64, timestamp: UInt64, captureMs: Int64, sentNs: UInt64)] = []
    var regions: SharedMemoryRegions?
  }

  func run(attempt: UInt64, state: PublishState) async throws {
    let codec = state.withLock { $0.queue.streamCodec.codec }
    let frameBytes = RawPicture.packedBytes(pixelFormat: codec.pixelFormat, width: codec.width, height: codec.height)
      ?? codec.width * codec.height * 4
    let memory = settings.sharedMemory ? try makeSharedMemory(frameBytes: frameBytes, attempt: attempt) : nil
    let session = Locked(Session(regions: memory.map { SharedMemoryRegions(capacity: $0.length) }))
    var metadata = Metadata()
    if let authentication = settings.authentication { metadata.addString(authentication, forKey: "x-ms-authentication") }
    do {
      try await ClientTransport.withClient(configuration.server, security: configuration.security) { client in
        var options = CallOptions.defaults
        options.waitForReady = false
        options.maxRequestMessageBytes = configuration.maxMessageBytes
        options.maxResponseMessageBytes = 16 << 20
        try await AVAExtension.Client(wrapping: client).processMediaStream(
          metadata: metadata, options: options,
          requestProducer: { writer in
            try await produce(into: writer, codec: codec, memory: memory, session: session, attempt: attempt, state: state)
          },
          onResponse: { response in
            try await consume(response, codec: codec, session: session, attempt: attempt, state: state)
          })
      }
    } catch let error as RPCError {
      throw explain(error, codec: codec, frameBytes: frameBytes, accepted: state.withLock { $0.accepted && $0.attempt == attempt })
    }
    withExtendedLifetime(memory) {}  // unlinked once the session is over
  }

  private func makeSharedMemory(frameBytes: Int, attempt: UInt64) throws -> SharedMemoryFile {
    let bytes = settings.sharedMemoryBytes ?? frameBytes * 16
    let name = "framerelay-\(configuration.device)-\(getpid())-\(attempt)"
    do {
      let file = try SharedMemoryFile(creating: name, length: bytes)
      created.withLock { $0.append(name) }
      return file
    } catch {
      throw PublishError.source("cannot create the shared memory for --shared-memory: \(error)")
    }
  }

  private func produce(
    into writer: RPCWriter<AVAMessage>, codec: CodecDescription, memory: SharedMemoryFile?, session: Locked<Session>,
    attempt: UInt64, state: PublishState
  ) async throws {
    try await writer.write(descriptor(codec, memory: memory))
    try await state.waitUntil(attempt: attempt) { $0.accepted }
    Publisher.resumed(after: 0, state: state, server: configuration.server, logger: logger)
    let generation = state.withLock { $0.queue.streamCodec.generation }
    let window = configuration.window
    let maxBytes = configuration.maxInFlightBytes
    let timeouts = Task { await expireUnacked(session: session, state: state) }
    defer { timeouts.cancel() }
    while true {
      let next = try await state.nextFrame(
        attempt: attempt, generation: generation, window: window, maxInFlightBytes: maxBytes)
      guard case .frame(let entry, _)? = next else {
        if case .wait? = next { continue }
        return  // finished, or the source changed format: a new session describes it
      }
      let data = entry.packet.data
      let timestamp = UInt64(max(0, entry.packet.captureTimeMs)) * UInt64(Self.timescale) / 1000
      var sample = AVASample()
      sample.timestamp = timestamp
      let message = session.withLock { $0.nextMessage }
      if let memory {
        let offset = try await region(for: data.count, message: message, session: session, attempt: attempt, state: state)
        memory.write(data, at: offset)
        sample.contentReference = .with {
          $0.addressOffset = UInt64(offset)
          $0.lengthBytes = UInt64(data.count)
        }
      } else {
        sample.contentBytes = .with { $0.bytes = data }
      }
      session.withLock { session in
        session.nextMessage += 1
        session.inFlight.append((message, entry.sequence, timestamp, entry.packet.captureTimeMs, WallClock.monotonicNs()))
      }
      state.recordSent(bytes: data.count)
      try await writer.write(.with {
        $0.sequenceNumber = message
        $0.mediaSample = sample
      })
    }
  }

  /// A region for the next sample; waits (for acks or timeouts) while the file is full.
  private func region(
    for length: Int, message: UInt64, session: Locked<Session>, attempt: UInt64, state: PublishState
  ) async throws -> Int {
    if let capacity = session.withLock({ $0.regions?.capacity }), length > capacity {
      throw PublishError.source(
        "a frame of \(length) bytes does not fit the \(capacity)-byte shared memory: raise --shared-memory-bytes")
    }
    while true {
      if let offset = session.withLock({ $0.regions?.allocate(length, tag: message) }) { return offset }
      // Full: acks and timeouts free regions (and wake the state).
      try await state.waitUntil(attempt: attempt) { _ in session.withLock { $0.regions?.canAllocate(length) ?? true } }
    }
  }

  private func consume(
    _ response: StreamingClientResponse<AVAMessage>, codec: CodecDescription, session: Locked<Session>, attempt: UInt64,
    state: PublishState
  ) async throws {
    defer { state.responseEnded(attempt: attempt) }
    for try await message in response.messages {
      let now = WallClock.monotonicNs()
      if case .mediaStreamDescriptor? = message.payload {
        state.markAccepted(attempt: attempt)
      } else if message.ackSequenceNumber > 0 {
        let acked = session.withLock { session -> [(UInt64, UInt64, Int64)] in
          let covered = session.inFlight.prefix { $0.message <= message.ackSequenceNumber }
          session.inFlight.removeFirst(covered.count)
          session.regions?.free(upTo: message.ackSequenceNumber)
          return covered.map { ($0.sequence, $0.timestamp, $0.captureMs) }
        }
        if let last = acked.last {
          Publisher.acknowledged(upTo: last.0, at: now, state: state)
          if case .mediaSample(let sample)? = message.payload, !sample.inferences.isEmpty {
            let named = acked.first { $0.0 == last.0 } ?? last
            settings.onInferences(
              .init(
                timestamp: sample.timestamp > 0 ? sample.timestamp : named.1, captureTimeMs: named.2,
                inferences: sample.inferences, frameSize: (codec.width, codec.height)))
          }
        }
      }
      state.wake()
    }
  }

  /// Counts samples whose ack has not come within `ackTimeout` as lost and reclaims their regions, so
  /// an extension that drops acks cannot stall the session.
  private func expireUnacked(session: Locked<Session>, state: PublishState) async {
    let timeoutNs = UInt64(settings.ackTimeout / .nanoseconds(1))
    while !Task.isCancelled {
      try? await Task.sleep(for: settings.ackTimeout / 4)
      let now = WallClock.monotonicNs()
      let expired = session.withLock { session -> [UInt64] in
        let old = session.inFlight.prefix { now - $0.sentNs > timeoutNs }
        session.inFlight.removeFirst(old.count)
        if let last = old.last { session.regions?.free(upTo: last.message) }
        return old.map(\.sequence)
      }
      guard let last = expired.last else { continue }
      state.withLock { values in
        _ = values.queue.acknowledge(upTo: last)
        values.stats.framesLost += expired.count
        values.lastProgressNs = now
      }
      state.wake()
      logger.warning(
        "no ack from the extension within \(settings.ackTimeout) for \(expired.count) sample(s): counted as lost, their shared memory reused")
    }
  }

  private func descriptor(_ codec: CodecDescription, memory: SharedMemoryFile?) -> AVAMessage {
    .with {
      $0.sequenceNumber = 1
      $0.mediaStreamDescriptor = .with { descriptor in
        descriptor.graphIdentifier = .with {
          $0.graphInstanceName = settings.graphInstanceName
          $0.graphNodeName = configuration.device.rawValue
        }
        descriptor.extensionConfiguration = settings.extensionConfiguration
        descriptor.mediaDescriptor = .with {
          $0.timescale = Self.timescale
          $0.videoFrameSampleFormat = .with { format in
            format.dimensions = .with { $0.width = UInt32(codec.width); $0.height = UInt32(codec.height) }
            switch settings.encoding {
            case .raw:
              format.encoding = .raw
              format.pixelFormat = AVASampleFormat.PixelFormat(ffmpegName: codec.pixelFormat) ?? .none
              format.strideBytes = UInt32(RawPicture.packedRowBytes(pixelFormat: codec.pixelFormat, width: codec.width) ?? 0)
            case .jpg: format.encoding = .jpg
            case .png: format.encoding = .png
            case .bmp: format.encoding = .bmp
            }
          }
        }
        if let memory {
          descriptor.sharedMemoryBufferTransferProperties = .with {
            $0.handleName = memory.name
            $0.lengthBytes = UInt64(memory.length)
          }
        }
      }
    }
  }

  /// A gRPC failure in words a person can act on.
  private func explain(_ error: RPCError, codec: CodecDescription, frameBytes: Int, accepted: Bool) -> any Error {
    guard error.code == .resourceExhausted || error.code == .unavailable && !accepted else { return error }
    if !accepted {
      return AVASessionRefused(description: "the extension did not take the session (\(error.code)): \(error.message)")
    }
    return PublishError.source(
      "the extension refused a \(codec.width)x\(codec.height) frame of \(frameBytes) bytes (\(error.code): \(error.message)): its gRPC receive limit is too small for \(codec.width)x\(codec.height) (Python grpcio's default is 4 MiB; raise grpc.max_receive_message_length there) or send with --shared-memory")
  }
}
