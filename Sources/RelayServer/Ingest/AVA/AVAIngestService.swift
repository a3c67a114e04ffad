import Foundation
import GRPCCore
import Logging
import NIOPosix
import RelayCore
import RelayProtocol
import ServiceLifecycle

/// relay-server as an AVA extension (`MediaGraphExtension/ProcessMediaStream`): each session is a camera.
/// The sender's descriptor says what the frames are; ours answers it (sequence 1, acking theirs); then
/// every sample is copied out of shared memory (or kept as received), stored in the device's stream,
/// and acked with the sample's sequence number.
struct AVAIngestService: AVAExtension.SimpleServiceProtocol {
  static let authenticationKey = "x-ms-authentication"

  let registry: StreamRegistry
  let configuration: ServerConfiguration
  let logger: Logger

  func processMediaStream(
    request: RPCAsyncSequence<AVAMessage, any Error>, response: RPCWriter<AVAMessage>, context: ServerContext
  ) async throws {
    // The metadata-aware overload below is the one gRPC calls.
    throw RPCError(code: .internalError, message: "processMediaStream without metadata")
  }

  func processMediaStream(
    request: StreamingServerRequest<AVAMessage>, context: ServerContext
  ) async throws -> StreamingServerResponse<AVAMessage> {
    try authenticate(request.metadata)
    return StreamingServerResponse { writer in
      do {
        try await cancelWhenGracefulShutdown {
          try await serve(request.messages, into: writer, peer: context.remotePeer)
        }
      } catch let error as AVAIngestError {
        throw RPCError(error)
      } catch is CancellationError where Task.isShuttingDownGracefully {
        throw RPCError(code: .unavailable, message: "relay-server is shutting down")
      }
      return [:]
    }
  }

  /// With `--ava-basic-credentials`, the call must carry a matching `x-ms-authentication: Basic …`.
  private func authenticate(_ metadata: Metadata) throws(RPCError) {
    guard let accepted = configuration.avaBasicCredentials else { return }
    let header = metadata[stringValues: Self.authenticationKey].first(where: { _ in true })
    guard let header else {
      throw RPCError(code: .unauthenticated, message: "this extension requires \(Self.authenticationKey): Basic base64(user:password)")
    }
    let parts = header.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "basic",
      let decoded = Data(base64Encoded: String(parts[1])).map({ String(decoding: $0, as: UTF8.self) }),
      accepted.contains(where: { Self.constantTimeEqual($0, decoded) })
    else {
      throw RPCError(code: .unauthenticated, message: "\(Self.authenticationKey) does not match a configured user and password")
    }
  }

  private static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let (x, y) = (Array(a.utf8), Array(b.utf8))
    guard x.count == y.count else { return false }
    return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
  }

  private func serve(
    _ messages: RPCAsyncSequence<AVAMessage, any Error>, into writer: RPCWriter<AVAMessage>, peer: String
  ) async throws {
    var iterator = messages.makeAsyncIterator()
    guard let first = try await iterator.next() else { return }
    guard case .mediaStreamDescriptor(let descriptor)? = first.payload else { throw AVAIngestError.sampleBeforeDescriptor }
    let layout = try AVAFrameLayout(descriptor, maxFrameBytes: configuration.maxFrameBytes)
    let sharedMemory = try await openSharedMemory(descriptor)
    let stream = try begin(descriptor, layout: layout, peer: peer)
    var endError: String?
    defer { stream.publisherDisconnected(error: endError) }

    var answer = AVAMessage()
    answer.sequenceNumber = 1
    answer.ackSequenceNumber = first.sequenceNumber
    answer.mediaStreamDescriptor = .with {
      $0.extensionIdentifier = "relay-server"
      $0.mediaDescriptor = descriptor.mediaDescriptor
    }
    try await writer.write(answer)

    var ourSequence: UInt64 = 1
    var timeline = AVATimeline(timescale: descriptor.mediaDescriptor.timescale)
    var samples: UInt64 = 0
    let metrics = IngestMetrics(protocol: "ava", device: stream.id)
    do {
      while let message = try await iterator.next() {
        switch message.payload {
        case .mediaStreamDescriptor?:
          throw AVAIngestError.secondDescriptor
        case .mediaSample(let sample)?:
          let arrived = metrics.received()
          let content = try contentOf(sample, sharedMemory: sharedMemory)
          try layout.check(content)
          if samples == 0 && layout.rawBytes == nil {
            try await NIOThreadPool.singleton.runIfActive { try layout.decodeCheck(content) }
          }
          samples += 1
          let now = WallClock.nowMs()
          stream.append(
            .init(
              sequence: message.sequenceNumber == 0 ? samples : message.sequenceNumber, data: content,
              pts: Int64(clamping: sample.timestamp), dts: Int64(clamping: sample.timestamp), isKeyframe: true,
              timestampMs: timeline.serverTime(ticks: sample.timestamp, arrivedMs: now)))
          ourSequence += 1
          // An ack is a media_sample (as AVA extensions answer, inference results riding on it).
          try await writer.write(.with {
            $0.sequenceNumber = ourSequence
            $0.ackSequenceNumber = message.sequenceNumber
            $0.mediaSample = .with { $0.timestamp = sample.timestamp }
          })
          metrics.acked(since: arrived)
        case nil:
          continue  // an ack of ours (senders may ack our descriptor, some with 0)
        }
      }
      logger.info("AVA session ended", metadata: ["device": "\(stream.id)", "samples": "\(samples)"])
    } catch let error as AVAIngestError {
      endError = error.description
      logger.warning("AVA sample refused: \(error)", metadata: ["device": "\(stream.id)"])
      throw error
    }
  }

  private func begin(_ descriptor: AVADescriptor, layout: AVAFrameLayout, peer: String) throws(AVAIngestError) -> DeviceStream {
    let name = AVADeviceName.of(descriptor, default: configuration.avaDefaultDevice)
    let id: DeviceID
    do { id = try DeviceID(validating: name) } catch {
      throw .invalidDevice("the device id from extension_configuration (\"device_id\") is not usable: \(error.description)")
    }
    guard Access.allows(device: id.rawValue) else { throw .deviceNotAllowed(id.rawValue) }
    let entry: StreamRegistry.Entry
    do { entry = try registry.entryCreatingIfNeeded(id) } catch {
      guard case .tooManyDevices(let limit) = error else { throw .tooManyDevices(limit: 0) }
      throw .tooManyDevices(limit: limit)
    }
    var status = DeviceStream.Status()
    status.source = peer
    entry.stream.publisherConnected(codec: layout.codec, status: status)
    logger.info(
      "AVA session started",
      metadata: [
        "device": "\(id)", "peer": "\(peer)", "format": "\(layout.codec.name) \(layout.codec.width)x\(layout.codec.height) \(layout.codec.pixelFormat)",
        "shared_memory": "\(descriptor.sharedMemoryBufferTransferProperties.handleName)",
      ])
    return entry.stream
  }

  private func openSharedMemory(_ descriptor: AVADescriptor) async throws -> SharedMemoryFile? {
    guard case .sharedMemoryBufferTransferProperties(let properties)? = descriptor.dataTransferProperties else { return nil }
    let length = Int(clamping: properties.lengthBytes)
    do {
      // Opening and mapping a file: off the cooperative pool.
      return try await NIOThreadPool.singleton.runIfActive {
        try SharedMemoryFile(opening: properties.handleName, length: length)
      }
    } catch let failure as SharedMemoryFile.Failure {
      throw AVAIngestError.sharedMemory(failure.description)
    }
  }

  /// The sample's bytes: as received, or copied once out of the shared memory (the only copy).
  private func contentOf(_ sample: AVASample, sharedMemory: SharedMemoryFile?) throws(AVAIngestError) -> Data {
    switch sample.content {
    case .contentBytes(let bytes)?:
      return bytes.bytes
    case .contentReference(let reference)?:
      guard let sharedMemory else { throw .referenceWithoutSharedMemory }
      guard reference.lengthBytes <= configuration.maxFrameBytes else {
        throw .referenceTooLarge(length: reference.lengthBytes, limit: configuration.maxFrameBytes)
      }
      guard sharedMemory.contains(offset: reference.addressOffset, count: reference.lengthBytes) else {
        throw .referenceOutside(
          offset: reference.addressOffset, length: reference.lengthBytes, fileBytes: sharedMemory.length,
          file: "/dev/shm/\(sharedMemory.name)")
      }
      return sharedMemory.copy(offset: Int(reference.addressOffset), count: Int(reference.lengthBytes))
    case nil:
      throw .emptySample
    }
  }
}
