import Foundation
import Logging
import RelayCore
import Synchronization

/// One camera's queue on disk (`relay-client --spool DIR`): every captured frame is appended to a
/// segment file in DIR/<device>/ before it is sent, with the acknowledgement and release points, so a
/// client that is killed or loses power resends, when it starts again, what was captured and not acked.
/// A frame's bytes stay in memory only while the queue's memory bound allows; past it they are read
/// back from disk when sent, so an outage of hours costs disk, not memory.
///
/// Durability: records are written at once (the page cache) and a thread makes them durable with
/// `fdatasync` every `syncInterval` (200 ms). A killed process loses nothing written; a power cut loses at
/// most the frames captured in the last sync interval and the one being written (at 30 fps, 7 frames),
/// and the last acknowledgements (those frames are sent again and the server, which resumes the
/// session, stores them once). A torn last record is cut off when the spool is opened.
public final class Spool: QueueJournal {
  public struct Configuration: Sendable {
    public var directory: String
    /// Bound on the frames spooled, in bytes (the queue drops whole GOPs past it, oldest first). The
    /// files can exceed it by one segment, which is deleted once all its frames are released.
    public var maxBytes: Int
    public var syncInterval: Duration = .milliseconds(200)

    public init(directory: String, maxBytes: Int) {
      self.directory = directory
      self.maxBytes = maxBytes
    }

    var segmentBytes: Int { min(64 << 20, max(1 << 20, maxBytes / 16)) }
  }

  /// What the previous runs left: the session to resume, the codecs, and the frames not yet released
  /// (their bytes on disk), oldest first.
  struct Contents {
    var sessionID: String
    var queue = QueueJournalContents()
    var damagedBytes = 0
  }

  struct Segment {
    var id: Int
    var path: String
    var lastSequence: UInt64 = 0
    var readDescriptor: Int32 = -1
  }

  private struct State {
    var segments: [Segment] = []
    var writeDescriptor: Int32 = -1
    var writtenBytes = 0
    var dirty = false
    var closed = false
    var position: SpoolPosition
    var codecs: [Int: CodecDescription]
    /// The first write error not yet recovered from (logged once).
    var writeFailure: String?
  }

  public let configuration: Configuration
  let directory: String
  let sessionID: String
  /// Read once, by the queue that takes the spool up.
  let restored: Contents
  private let state: Mutex<State>
  private let logger: Logger

  /// Opens (or creates) DIR/<device>/ and reads what an earlier run left there.
  public init(_ configuration: Configuration, device: DeviceID, logger: Logger) throws(SpoolError) {
    self.configuration = configuration
    self.logger = logger
    directory = (configuration.directory as NSString).appendingPathComponent(device.rawValue)
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw SpoolError("cannot create the spool directory \(directory): \(Self.reason(error)); give --spool a directory this user can write")
    }
    guard access(directory, W_OK) == 0 else {
      throw SpoolError("the spool directory \(directory) is not writable: \(String(cString: strerror(errno))); give --spool a directory this user can write")
    }
    sessionID = try Self.session(in: directory)
    let (contents, segments) = try Self.read(directory: directory, sessionID: sessionID)
    restored = contents
    var state = State(position: contents.queue.position, codecs: contents.queue.codecs)
    state.segments = segments
    self.state = Mutex(state)
    try self.state.withLock { state throws(SpoolError) in
      try startSegment(&state)
      deleteReleasedSegments(&state)
    }
    let interval = configuration.syncInterval
    // It ends by itself within one interval of `close` (or of the spool going away).
    DedicatedThread.start(name: "spool-sync \(device)") { [weak self] in
      while let spool = self, spool.syncOnce(after: interval) {}
    }
    if !restored.queue.frames.isEmpty || restored.damagedBytes > 0 {
      let first = restored.queue.frames.first?.sequence ?? 0
      let last = restored.queue.frames.last?.sequence ?? 0
      let torn = restored.damagedBytes > 0 ? "; cut off \(restored.damagedBytes) bytes of a torn last record" : ""
      logger.notice(
        "spool \(directory): \(restored.queue.frames.count) frames from an earlier run to send (sequences \(first)…\(last))\(torn)")
    }
  }

  deinit { close() }

  /// Makes everything written durable, stops the sync thread and closes the files.
  public func close() {
    let descriptors = state.withLock { state -> [Int32] in
      guard !state.closed else { return [] }
      state.closed = true
      defer {
        state.writeDescriptor = -1
        for index in state.segments.indices { state.segments[index].readDescriptor = -1 }
      }
      return [state.writeDescriptor] + state.segments.map(\.readDescriptor)
    }
    if let first = descriptors.first, first >= 0 { fdatasync(first) }
    for descriptor in descriptors where descriptor >= 0 { Glibc.close(descriptor) }
  }

  // MARK: QueueJournal (called under the publisher's lock, in the queue's order)

  func codecOpened(generation: Int, _ codec: CodecDescription) {
    state.withLock { state in
      state.codecs[generation] = codec
      write(.codec(generation: generation, codec), in: &state)
    }
  }

  func captured(_ entry: Outbox.Entry) -> SpoolLocation? {
    let frame = SpoolFrame(
      sequence: entry.sequence, codecGeneration: entry.codecGeneration, isKeyframe: entry.packet.isKeyframe,
      pts: entry.packet.pts, dts: entry.packet.dts, captureTimeMs: entry.packet.captureTimeMs, data: entry.packet.data)
    return state.withLock { state -> SpoolLocation? in
      state.position.nextSequence = max(state.position.nextSequence, entry.sequence + 1)
      guard let location = write(.frame(frame), in: &state) else { return nil }
      state.segments[state.segments.count - 1].lastSequence = entry.sequence
      return location
    }
  }

  func acknowledged(through sequence: UInt64) {
    state.withLock { state in
      guard sequence > state.position.acknowledgedThrough else { return }
      state.position.acknowledgedThrough = sequence
      write(.acknowledged(through: sequence), in: &state)
    }
  }

  func released(before sequence: UInt64) {
    state.withLock { state in
      guard sequence > state.position.releasedBefore else { return }
      state.position.releasedBefore = sequence
      write(.released(before: sequence), in: &state)
      deleteReleasedSegments(&state)
    }
  }

  // MARK: Reading a frame back

  /// The bytes of the frame spooled at `location` (a frame whose bytes left memory). Read under the
  /// lock, so its segment cannot be deleted meanwhile (a page-cache read: microseconds).
  func read(_ location: SpoolLocation) throws(SpoolError) -> Data {
    try state.withLock { state throws(SpoolError) -> Data in
      guard let index = state.segments.firstIndex(where: { $0.id == location.segment }) else {
        // The bound dropped the frame's GOP (and its segment) after the queue handed the frame out.
        throw SpoolError("spool segment \(location.segment) in \(directory) is gone (its frames were dropped)", frameGone: true)
      }
      if state.segments[index].readDescriptor < 0 {
        let descriptor = open(state.segments[index].path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
          throw SpoolError("cannot open \(state.segments[index].path): \(String(cString: strerror(errno)))")
        }
        state.segments[index].readDescriptor = descriptor
      }
      let descriptor = state.segments[index].readDescriptor
      var bytes = Data(count: location.length)
      let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, location.length, off_t(location.offset)) }
      guard count == location.length else {
        throw SpoolError(
          "cannot read \(location.length) bytes at \(location.offset) of spool segment \(location.segment) in \(directory): \(count < 0 ? String(cString: strerror(errno)) : "the file is shorter")")
      }
      guard case .record(.frame(let frame), _) = SpoolRecord.decode(bytes) else {
        throw SpoolError("the frame at \(location.offset) of spool segment \(location.segment) in \(directory) is damaged")
      }
      return frame.data
    }
  }

  // MARK: Writing

  /// Appends a record to the current segment (a new one past the segment size); nil when it could not
  /// be written: the frame then stays in memory only, and the failure is logged once.
  @discardableResult
  private func write(_ record: SpoolRecord, in state: inout State) -> SpoolLocation? {
    guard !state.closed else { return nil }
    let (prefix, payload) = record.encodedParts()
    let length = prefix.count + payload.count
    // A new segment past the segment size, or after a segment could not be started.
    if state.writeDescriptor < 0 || (state.writtenBytes + length > configuration.segmentBytes && state.writtenBytes > 0) {
      do { try startSegment(&state) } catch { return failed(error.description, in: &state) }
    }
    let offset = state.writtenBytes
    guard Self.writeAll(state.writeDescriptor, prefix, payload) else {
      let reason = String(cString: strerror(errno))
      ftruncate(state.writeDescriptor, off_t(offset))  // no torn record in the middle of the segment
      return failed("cannot write to \(state.segments.last!.path): \(reason)", in: &state)
    }
    state.writtenBytes += length
    state.dirty = true
    if let failure = state.writeFailure {
      logger.notice("spool writes work again (after: \(failure))")
      state.writeFailure = nil
    }
    return SpoolLocation(segment: state.segments.last!.id, offset: Int64(offset), length: length)
  }

  private func failed(_ reason: String, in state: inout State) -> SpoolLocation? {
    if state.writeFailure == nil {
      logger.error("\(reason); frames stay in memory only until spool writes work again")
      state.writeFailure = reason
    }
    return nil
  }

  /// Closes the current segment (durably) and starts the next with a header that makes it readable
  /// on its own.
  private func startSegment(_ state: inout State) throws(SpoolError) {
    if state.writeDescriptor >= 0 {
      fdatasync(state.writeDescriptor)
      Glibc.close(state.writeDescriptor)
      state.writeDescriptor = -1
    }
    let id = (state.segments.last?.id ?? 0) + 1
    let path = (directory as NSString).appendingPathComponent(String(format: "%08d.seg", id))
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw SpoolError("cannot create \(path): \(String(cString: strerror(errno))); check the --spool directory's permissions and free space")
    }
    Self.syncDirectory(directory)
    state.segments.append(Segment(id: id, path: path))
    state.writeDescriptor = descriptor
    state.writtenBytes = 0
    let inUse = state.codecs
    guard write(.header(state.position, codecs: inUse), in: &state) != nil else {
      throw SpoolError(state.writeFailure ?? "cannot write the header of \(path)")
    }
  }

  /// Deletes the segments, other than the current one, whose frames are all released (the current
  /// segment's header carries everything the older ones told).
  private func deleteReleasedSegments(_ state: inout State) {
    let releasedBefore = state.position.releasedBefore
    let current = state.segments.last?.id
    state.segments.removeAll { segment in
      guard segment.id != current, segment.lastSequence < releasedBefore else { return false }
      if segment.readDescriptor >= 0 { Glibc.close(segment.readDescriptor) }
      unlink(segment.path)
      return true
    }
  }

  /// One turn of the sync thread; false once the spool is closed.
  private func syncOnce(after interval: Duration) -> Bool {
    Thread.sleep(forTimeInterval: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
    let descriptor = state.withLock { state -> Int32? in
      guard !state.closed else { return nil }
      defer { state.dirty = false }
      return state.dirty ? state.writeDescriptor : -1
    }
    guard let descriptor else { return false }
    if descriptor >= 0 { fdatasync(descriptor) }
    return true
  }

  private static func writeAll(_ descriptor: Int32, _ parts: Data...) -> Bool {
    for part in parts {
      var done = 0
      while done < part.count {
        let count = part.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + done, part.count - done) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { return false }
        done += count
      }
    }
    return true
  }

  private static func syncDirectory(_ path: String) {
    let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    fsync(descriptor)
    Glibc.close(descriptor)
  }

  /// The operating system's words for a Foundation file error ("Not a directory"), else Foundation's.
  private static func reason(_ error: any Error) -> String {
    let error = error as NSError
    if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
      return String(cString: strerror(Int32(underlying.code)))
    }
    return error.localizedDescription
  }
}

/// Where a spooled frame's record lies.
struct SpoolLocation: Equatable, Sendable {
  var segment: Int
  var offset: Int64
  var length: Int
}

public struct SpoolError: Error, CustomStringConvertible {
  public let description: String
  /// Not a failure of the disk: the frame asked for was dropped by the bound meanwhile.
  let frameGone: Bool

  init(_ description: String, frameGone: Bool = false) {
    self.description = description
    self.frameGone = frameGone
  }
}
