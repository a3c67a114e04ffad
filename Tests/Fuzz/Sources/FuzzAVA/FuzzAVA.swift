// AVA (MediaGraphExtension/ProcessMediaStream): an input is up to 8 calls; each call's first piece is
// its x-ms-authentication header (empty: no header, and the server requires none), the others are
// MediaStreamMessages (a media stream descriptor, then samples with embedded content or references
// into shared memory), fed to the server's own handler in order against one server state.
//
// Shared memory: the process creates /dev/shm/framerelay-fuzz-ava (64 KiB, a 16x16 JPEG at offset 0,
// a byte ramp after it); the seeds' descriptors name it, so references are checked against a real
// mapping and copied out of it. A reference outside the mapped region must be refused, never read.
import Foundation
import CFuzzDriver
import FuzzSupport
import GRPCCore
import RelayCore
import RelayProtocol

@testable import RelayServer

private let sharedMemoryName = "framerelay-fuzz-ava"
private let sharedMemoryBytes = 64 << 10
/// A 16x16 JPEG (ffmpeg testsrc), so a JPG session's first sample can pass the decode check.
private let jpeg = Data(
  base64Encoded:
    "/9j/4AAQSkZJRgABAgAAAQABAAD//gAQTGF2YzU5LjM3LjEwMAD/2wBDAAgoKC8oLzc3Nzc3N0E8QUNDQ0FBQUFDQ0NISEhVVVVISEhDQ0hIUFBVVVxfXFdXVVdfX2RkZHh4c3OMjJGsrM//xABvAAEBAAAAAAAAAAAAAAAAAAAFBgEBAAMBAAAAAAAAAAAAAAAABgIDAQQQAQABAwQDAQEAAAAAAAAAAAECAAMRUSFhMSIEQYESEQACAQMCBQUBAQAAAAAAAAACAQMAERIEIXFBMWETgSMyUdJykf/AABEIABAAEAMBEgACEgADEgD/2gAMAwEAAhEDEQA/AJn+ZWLEUUZBLIvThNPjvVDIhdsw84mIxj8egNeKUwQxm7kKL+ldf49uVHINSYnioifq/wA1okzUqdvaQIO2buT4vpwrnkT0/kxTkUmO65Ybd79fSlb109W4MQIiZAOts4633cc0J7MZ35sSEj8XTjihkEsh/IiLi2/v7pJFpwAMhmE7clb9OrwFG5m7vx4Ybuw5fKyvbep6YhJyomgcmGze6x7O16//2Q=="
)!

/// The mapping the sender would have made. Created once per process; the same bytes every time.
private let sharedMemory: Bool = {
  var bytes = [UInt8](repeating: 0, count: sharedMemoryBytes)
  for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index) }
  bytes.replaceSubrange(0..<jpeg.count, with: jpeg)
  let path = "/dev/shm/\(sharedMemoryName)"
  let temporary = "\(path).\(getpid())"
  guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)), rename(temporary, path) == 0 else {
    fatalError("cannot create \(path)")
  }
  return true
}()

private func configuration(credentials: Bool) -> ServerConfiguration {
  var configuration = ServerConfiguration()
  configuration.maxFrameBytes = 1 << 16
  configuration.ringMaxBytes = 1 << 20
  configuration.maxDevices = 4
  configuration.avaBasicCredentials = credentials ? ["fuzz:fuzz"] : nil
  return configuration
}

private let open = configuration(credentials: false)
private let guarded = configuration(credentials: true)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  precondition(sharedMemory)
  let calls = Fuzz.calls(Fuzz.data(start, count))
  Fuzz.block {
    let registry = StreamRegistry(configuration: open, metrics: DecoderMetrics(), logger: Fuzz.logger)
    for call in calls {
      let header = call.first ?? Data()
      let configuration = header.isEmpty ? open : guarded
      let service = AVAIngestService(registry: registry, configuration: configuration, logger: Fuzz.logger)
      var metadata: Metadata = [:]
      if !header.isEmpty { metadata.addString(String(decoding: header, as: UTF8.self), forKey: "x-ms-authentication") }
      let request = StreamingServerRequest(
        metadata: metadata, messages: Fuzz.requests(Array(call.dropFirst()), as: AVAMessage.self))
      let answers = Collector<AVAMessage>()
      let before = Dictionary(uniqueKeysWithValues: registry.all.map { ($0.stream.id, $0.stream.newestIndex) })
      do {
        try await Access.$grant.withValue(.everything) {
          let response = try await service.processMediaStream(
            request: request,
            context: Fuzz.context(
              service: "microsoft.azure.media.live_video_analytics.extensibility.grpc.v1.MediaGraphExtension",
              method: "ProcessMediaStream"))
          if case .success(let contents) = response.accepted { _ = try await contents.producer(answers.writer) }
        }
      } catch {
        // A refusal is an answer; only crashes and hangs are findings.
      }
      check(answers.written)
      // What this call stored: within the frame limit, in the ring in order, on a clock that moves forward.
      for entry in registry.all {
        let packets = entry.stream.packets(after: before[entry.stream.id] ?? 0)
        for (a, b) in zip(packets, packets.dropFirst()) {
          Fuzz.require(
            a.index < b.index && a.timestampMs < b.timestampMs,
            "ring order: \(a.index)@\(a.timestampMs) then \(b.index)@\(b.timestampMs)")
        }
        for packet in packets { Fuzz.require(packet.data.count <= open.maxFrameBytes, "a stored sample over the frame limit") }
      }
    }
  }
  return 0
}

/// Our descriptor first (sequence 1), then one ack per stored sample, our sequence counting up.
private func check(_ answers: [AVAMessage]) {
  guard let first = answers.first else { return }
  Fuzz.require(first.sequenceNumber == 1, "first answer has sequence \(first.sequenceNumber)")
  guard case .mediaStreamDescriptor? = first.payload else { Fuzz.require(false, "first answer is not a descriptor"); return }
  for (index, answer) in answers.enumerated().dropFirst() {
    Fuzz.require(answer.sequenceNumber == UInt64(index + 1), "answer \(index) has sequence \(answer.sequenceNumber)")
    guard case .mediaSample? = answer.payload else { Fuzz.require(false, "an answer after the first is not a sample ack"); return }
  }
}

@_cdecl("FuzzAVA_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
