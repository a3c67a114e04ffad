import Foundation
import RelayCore

/// Opening a spool: the session file and the segments an earlier run left.
extension Spool {
  /// The session id every run on this spool uses (so a server resumes it), made on first use.
  static func session(in directory: String) throws(SpoolError) -> String {
    let path = (directory as NSString).appendingPathComponent("session")
    if let text = try? String(contentsOfFile: path, encoding: .utf8) {
      let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !id.isEmpty, id.count <= 128 else {
        throw SpoolError("\(path) does not hold a session id; delete the file to start a new session")
      }
      return id
    }
    let id = UUID().uuidString
    let temporary = path + ".new"
    guard FileManager.default.createFile(atPath: temporary, contents: Data((id + "\n").utf8)) else {
      throw SpoolError("cannot write \(temporary): \(String(cString: strerror(errno))); give --spool a directory this user can write")
    }
    let descriptor = open(temporary, O_RDONLY | O_CLOEXEC)
    if descriptor >= 0 {
      fsync(descriptor)
      Glibc.close(descriptor)
    }
    guard rename(temporary, path) == 0 else {
      throw SpoolError("cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
    }
    return id
  }

  /// Reads every segment in order. A record that does not check out ends its segment; in the last
  /// segment (a torn write at a power cut or a kill) the file is cut there.
  static func read(directory: String, sessionID: String) throws(SpoolError) -> (Contents, [Segment]) {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: directory)
    } catch {
      throw SpoolError("cannot list the spool directory \(directory): \(error.localizedDescription)")
    }
    let ids = names.compactMap { name -> Int? in
      guard name.hasSuffix(".seg") else { return nil }
      return Int(name.dropLast(4))
    }.sorted()
    var contents = Contents(sessionID: sessionID)
    var frames: [UInt64: Outbox.Entry] = [:]
    var segments: [Segment] = []
    for (index, id) in ids.enumerated() {
      let path = (directory as NSString).appendingPathComponent(String(format: "%08d.seg", id))
      var segment = Segment(id: id, path: path)
      let cut = try scan(path) { record, offset, length in
        switch record {
        case .header(let position, let codecs):
          contents.queue.position.nextSequence = max(contents.queue.position.nextSequence, position.nextSequence)
          contents.queue.position.acknowledgedThrough = max(contents.queue.position.acknowledgedThrough, position.acknowledgedThrough)
          contents.queue.position.releasedBefore = max(contents.queue.position.releasedBefore, position.releasedBefore)
          contents.queue.codecs.merge(codecs) { _, new in new }
        case .codec(let generation, let codec):
          contents.queue.codecs[generation] = codec
        case .frame(let frame):
          contents.queue.position.nextSequence = max(contents.queue.position.nextSequence, frame.sequence + 1)
          segment.lastSequence = max(segment.lastSequence, frame.sequence)
          let packet = EncodedPacket(
            data: Data(), pts: frame.pts, dts: frame.dts, isKeyframe: frame.isKeyframe, captureTimeMs: frame.captureTimeMs)
          frames[frame.sequence] = Outbox.Entry(
            sequence: frame.sequence, packet: packet, codecGeneration: frame.codecGeneration, size: frame.data.count,
            storedAt: SpoolLocation(segment: id, offset: offset, length: length))
        case .acknowledged(let through):
          contents.queue.position.acknowledgedThrough = max(contents.queue.position.acknowledgedThrough, through)
        case .released(let before):
          contents.queue.position.releasedBefore = max(contents.queue.position.releasedBefore, before)
        }
      }
      if let (offset, size) = cut {
        contents.damagedBytes += size - Int(offset)
        if index == ids.count - 1 { truncate(path, off_t(offset)) }
      }
      segments.append(segment)
    }
    contents.queue.frames = frames.values
      .filter { $0.sequence >= contents.queue.position.releasedBefore && contents.queue.codecs[$0.codecGeneration] != nil }
      .sorted { $0.sequence < $1.sequence }
    return (contents, segments)
  }

  /// Calls `visit` for each record of the file with its offset and length; returns where the records
  /// stopped checking out (and the file's size), or nil when the whole file is good.
  private static func scan(
    _ path: String, _ visit: (SpoolRecord, Int64, Int) -> Void
  ) throws(SpoolError) -> (Int64, Int)? {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw SpoolError("cannot open \(path): \(String(cString: strerror(errno)))")
    }
    defer { try? handle.close() }
    let size = Int((try? handle.seekToEnd()) ?? 0)
    try? handle.seek(toOffset: 0)
    var offset: Int64 = 0
    while Int(offset) < size {
      guard let header = try? handle.read(upToCount: SpoolRecord.headerBytes), header.count == SpoolRecord.headerBytes else {
        return (offset, size)
      }
      let bodyLength = header.prefix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
      guard bodyLength <= SpoolRecord.maxBodyBytes, let body = try? handle.read(upToCount: bodyLength) ?? Data(),
        body.count == bodyLength
      else { return (offset, size) }
      guard case .record(let record, let length) = SpoolRecord.decode(header + body) else { return (offset, size) }
      visit(record, offset, length)
      offset += Int64(length)
    }
    return nil
  }
}
