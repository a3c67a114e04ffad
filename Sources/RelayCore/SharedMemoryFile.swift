import Foundation

/// A file under /dev/shm mapped into memory: AVA's shared-memory transfer. The receiving side opens
/// one read-only and copies regions out; the sending side creates one, writes regions and unlinks it.
public final class SharedMemoryFile: @unchecked Sendable {
  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  public let name: String
  public let length: Int
  private let base: UnsafeMutableRawPointer
  private let owned: Bool

  /// Opens `/dev/shm/NAME`, which must hold at least `length` bytes. `name` is a bare file name.
  public init(opening name: String, length: Int) throws(Failure) {
    let name = name.hasPrefix("/") ? String(name.dropFirst()) : name
    try Self.check(name)
    guard length > 0 else { throw Failure(description: "shared memory \(name): length_bytes is 0") }
    let path = "/dev/shm/\(name)"
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw Failure(description: "cannot open shared memory \(path): \(Self.errnoText())") }
    defer { close(fd) }
    var status = stat()
    guard fstat(fd, &status) == 0 else { throw Failure(description: "cannot stat \(path): \(Self.errnoText())") }
    guard Int(status.st_size) >= length else {
      throw Failure(description: "shared memory \(path) holds \(status.st_size) bytes, less than the \(length) the descriptor names")
    }
    guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
      throw Failure(description: "cannot map \(path): \(Self.errnoText())")
    }
    self.name = name
    self.length = length
    self.base = mapped
    self.owned = false
  }

  /// Creates `/dev/shm/NAME` of `length` bytes (replacing nothing: the name must be new).
  public init(creating name: String, length: Int) throws(Failure) {
    try Self.check(name)
    let path = "/dev/shm/\(name)"
    let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
    guard fd >= 0 else { throw Failure(description: "cannot create shared memory \(path): \(Self.errnoText())") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(length)) == 0,
      let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED
    else {
      let reason = Self.errnoText()
      unlink(path)
      throw Failure(description: "cannot size or map shared memory \(path) (\(length) bytes): \(reason)")
    }
    self.name = name
    self.length = length
    self.base = mapped
    self.owned = true
  }

  deinit {
    munmap(base, length)
    if owned { unlink("/dev/shm/\(name)") }
  }

  /// Whether [offset, offset + count) lies inside the file (no overflow).
  public func contains(offset: UInt64, count: UInt64) -> Bool {
    let (end, overflow) = offset.addingReportingOverflow(count)
    return !overflow && end <= UInt64(length)
  }

  /// A copy of the region (the one copy out of the mapping). The region must be inside (`contains`).
  public func copy(offset: Int, count: Int) -> Data {
    Data(bytes: base + offset, count: count)
  }

  /// Writes `data` at `offset` (the sending side). The region must be inside.
  public func write(_ data: Data, at offset: Int) {
    data.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
      (base + offset).copyMemory(from: source.baseAddress!, byteCount: source.count)
    }
  }

  private static func check(_ name: String) throws(Failure) {
    guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
      throw Failure(description: "shared memory handle_name \"\(name)\" is not a file name under /dev/shm")
    }
  }

  private static func errnoText() -> String { "\(String(cString: strerror(errno))) (errno \(errno))" }
}
