import Foundation
import Testing

@testable import Settings

@Suite struct SettingsTests {
  private func file(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "settings-\(UUID().uuidString).yaml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test func flagsOverrideTheEnvironmentWhichOverridesTheFile() throws {
    let path = try file("""
      ring:
        max_bytes: 1000
        max_seconds: 5
      window: 8
      """)
    let settings = try Settings(file: path, environment: ["FRAMERELAY_RING_MAX_BYTES": "2000", "FRAMERELAY_WINDOW": "9"])
    #expect(settings.int("ring.maxBytes", flag: nil, default: 1) == 2000, "environment over file")
    #expect(settings.double("ring.maxSeconds", flag: nil, default: 1) == 5, "file over default")
    #expect(settings.int("window", flag: 10, default: 1) == 10, "flag over environment")
    #expect(settings.int("maxDevices", flag: nil, default: 64) == 64, "default")
    try settings.finish()
  }

  /// Fuzzing found relay-server crashing on `decoder: idle_seconds: 1066…6` (a Double too large for
  /// whole milliseconds); infinity, nan and anything past 10^9 are now problems like any other.
  @Test func numbersTooLargeOrNotFiniteAreProblems() throws {
    let path = try file("""
      decoder:
        idle_seconds: 106666666666666666666666666666666666666666666666666666666666
      ring:
        max_seconds: inf
      record:
        segment_seconds: nan
      duration: 1000000000
      """)
    let settings = try Settings(file: path, environment: [:])
    #expect(settings.double("decoder.idleSeconds", flag: nil, default: 10) == 10)
    #expect(settings.double("ring.maxSeconds", flag: nil, default: 30) == 30)
    #expect(settings.double("record.segmentSeconds", flag: nil, default: 60) == 60)
    #expect(settings.double("duration", flag: nil, default: 0, atLeast: 0, orMore: true) == 1_000_000_000)
    do {
      try settings.finish()
      Issue.record("problems were not reported")
    } catch {
      let huge = "106666666666666666666666666666666666666666666666666666666666"
      #expect(error.lines.contains { $0.hasSuffix(":2: decoder.idle_seconds: \"\(huge)\" is not a number above 0 and at most 1000000000") }, "\(error.lines)")
      #expect(error.lines.contains { $0.hasSuffix(":4: ring.max_seconds: \"inf\" is not a number above 0 and at most 1000000000") }, "\(error.lines)")
      #expect(error.lines.contains { $0.contains("segment_seconds: \"nan\" is not a number") }, "\(error.lines)")
      #expect(!error.lines.contains { $0.contains("duration") })
    }
  }

  @Test func namesDeriveFromTheKey() {
    #expect(Settings.flagName("tls.clientCa") == "--tls-client-ca")
    #expect(Settings.environmentName("http2.maxFrameSize") == "FRAMERELAY_HTTP2_MAX_FRAME_SIZE")
    #expect(SettingsKey.camel("max_bytes_total") == "maxBytesTotal")
    #expect(SettingsKey.snake("queue.maxBytesTotal") == "queue.max_bytes_total")
  }

  @Test func everyProblemIsOneLineNamingKeyValueAndWhatIsAllowed() throws {
    let path = try file("""
      ring:
        max_bytes: lots
      max_devcies: 3
      http2:
        max_frame_size: 12
      """)
    let settings = try Settings(file: path, environment: ["FRAMERELAY_WINDOW": "-1"])
    _ = settings.int("ring.maxBytes", flag: nil, default: 1)
    _ = settings.int("maxDevices", flag: nil, default: 64)
    _ = settings.int("window", flag: nil, default: 32)
    _ = settings.int("http2.maxFrameSize", flag: nil, default: 16384, allowed: 16384...16_777_215)
    do {
      try settings.finish()
      Issue.record("problems were not reported")
    } catch {
      let lines = error.lines
      #expect(lines.count == 4, "\(lines)")
      #expect(lines.contains { $0.hasSuffix(":2: ring.max_bytes: \"lots\" is not a whole number of at least 1") })
      #expect(lines.contains { $0 == "FRAMERELAY_WINDOW: \"-1\" is not a whole number of at least 1" })
      #expect(lines.contains { $0.contains(":5: http2.max_frame_size: \"12\" is not a whole number from 16384 to 16777215") })
      #expect(lines.contains { $0.contains(":3: unknown key max_devcies; did you mean max_devices?") })
    }
  }

  @Test func aListWhereOneValueBelongsIsAProblem() throws {
    let path = try file("window: [1, 2]\n")
    let settings = try Settings(file: path, environment: [:])
    #expect(settings.int("window", flag: nil, default: 32) == 32)
    #expect(throws: SettingsProblems.self) { try settings.finish() }
    do { try settings.finish() } catch { #expect(error.lines == ["\(path):1: window: must be a single value, not a list"]) }
  }

  @Test func listsComeFromRepeatedFlagsYAMLListsOrCommas() throws {
    let path = try file("listen: [\"127.0.0.1:1\", \"[::1]:2\"]\n")
    #expect(try Settings(file: path, environment: [:]).strings("listen", flag: [], default: []) == ["127.0.0.1:1", "[::1]:2"])
    #expect(try Settings(file: path, environment: ["FRAMERELAY_LISTEN": "a:1,b:2"]).strings("listen", flag: [], default: []) == ["a:1", "b:2"])
    #expect(try Settings(file: path, environment: [:]).strings("listen", flag: ["c:3"], default: []) == ["c:3"])
  }

  @Test func recordsReportTheirUnknownFields() throws {
    let path = try file("""
      cameras:
        - device: door
          rtsp: rtsp://u:p@cam/1
        - device: yard
          test_patern: true
      """)
    let settings = try Settings(file: path, environment: [:])
    let cameras = settings.records("cameras")
    #expect(cameras.count == 2)
    #expect(cameras[0].string("device") == "door")
    #expect(cameras[0].string("rtsp", masked: { _ in "rtsp://cam/1" }) == "rtsp://u:p@cam/1")
    #expect(cameras[1].string("testPattern") == nil)
    for camera in cameras { camera.finish(knownFields: ["device", "rtsp", "testPattern"]) }
    do {
      try settings.finish()
      Issue.record("the misspelt field was not reported")
    } catch {
      #expect(error.lines == ["\(path):5: cameras[1]: unknown key test_patern; did you mean test_pattern?"])
    }
    #expect(!settings.yaml().contains("u:p@"), "the printed settings hide the password")
  }

  @Test func printedSettingsAreYAMLWithSecretsMasked() throws {
    let settings = try Settings(file: nil, environment: ["FRAMERELAY_TLS_CERT": "/etc/a.pem"])
    _ = settings.strings("listen", flag: [], default: ["127.0.0.1:50001"])
    _ = settings.string("tls.cert", flag: nil, default: nil)
    _ = settings.string("tls.clientCa", flag: nil, default: nil)
    _ = settings.string("annotations.secret", flag: "hunter2", default: nil, secret: true)
    let yaml = settings.yaml()
    #expect(yaml.contains("listen:\n- 127.0.0.1:50001"))
    #expect(yaml.contains("tls:\n  cert: /etc/a.pem\n  client_ca: ~") || yaml.contains("client_ca: null"), "\(yaml)")
    #expect(!yaml.contains("hunter2") && yaml.contains("secret: '********'"), "\(yaml)")
  }

  @Test func aFileThatIsNotYAMLOrNotAMappingIsOneProblem() throws {
    #expect(throws: SettingsProblems.self) { try Settings(file: try file("- a\n- b\n"), environment: [:]) }
    #expect(throws: SettingsProblems.self) { try Settings(file: try file("a: [1\n"), environment: [:]) }
    #expect(throws: SettingsProblems.self) { try Settings(file: "/nonexistent/relay.yaml", environment: [:]) }
  }
}

/// NearestKey against the plain textbook computation it replaced (a fresh array per row, every key
/// compared): the same suggestion for every key, however many unknown keys a file has.
@Suite struct NearestKeyTests {
  private static func reference(_ known: [String], _ key: String) -> String? {
    func distance(_ a: String, _ b: String) -> Int {
      let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
      if a.isEmpty { return b.count }
      var previous = Array(0...b.count)
      for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() { current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))) }
        previous = current
      }
      return previous[b.count]
    }
    let scored: [(key: String, score: Int)] = known.map { ($0, distance($0.lowercased(), key.lowercased())) }
    let best = scored.min { (a: (key: String, score: Int), b: (key: String, score: Int)) -> Bool in
      a.score < b.score || (a.score == b.score && a.key < b.key)
    }
    guard let best, best.score <= max(2, key.count / 3) else { return nil }
    return best.key
  }

  @Test func suggestsWhatTheTextbookComputationSuggests() {
    let known = [
      "listen", "metrics.listen", "tls.cert", "tls.key", "tls.clientCa", "ring.maxBytes", "ring.maxSeconds", "maxDevices",
      "maxFrameBytes", "window", "decoder.idleSeconds", "annotations.upstream", "annotations.batchSize", "simple.shape",
      "ava.defaultDevice", "log.level", "log.format", "dataDir", "a", "ab",
    ]
    var generator = SystemRandomNumberGenerator()
    let alphabet = Array("abcdeilmnorstxyzAB.-_é")
    var keys: [String] = ["", "x", "LISTEN", "lisetn", "ring.maxbyte"]
    keys += known.map { $0 + "x" }
    keys += known.map { String($0.dropLast()) }
    for _ in 0..<300 {
      keys.append(String((0..<Int.random(in: 0...16, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
    }
    for key in keys {
      #expect(NearestKey.among(known, to: key) == Self.reference(known, key), "key \"\(key)\"")
    }
    #expect(NearestKey.among(known, to: "ring.maxbyte") == "ring.maxBytes")
    #expect(NearestKey.among(known, to: "qqqqqqqqqqqq") == nil)
  }
}
