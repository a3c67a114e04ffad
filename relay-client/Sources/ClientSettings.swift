import Foundation
import RelayClient
import RelayCore
import Settings

/// relay-client's settings, read from flags, FRAMERELAY_… environment variables and the --config file
/// (in that order of precedence): the server, TLS and token, the run's bounds, and the cameras, either
/// one (top-level `device` and source keys, as the flags give them) or a gateway's `cameras:` list.
/// Every problem is collected; the command prints them, one per line, and exits 2.
struct ClientSettings {
  struct Camera {
    let device: DeviceID
    let source: SourceSpec
  }

  let server: HostPort
  let cameras: [Camera]
  /// The device was named (rather than defaulted): the minimal protocol then sends it as x-device-id.
  let deviceGiven: Bool
  let security: ClientSecurity
  let run: RunOptions.Values
  let yaml: String

  struct Defaults {
    /// nil: the server must be given.
    var server: String?
    /// nil: the device must be given.
    var device: String?
    var window: Int
    /// Whether a `cameras:` list may be given (publish only).
    var gateway: Bool
  }

  static func read(
    server serverFlag: String?, device deviceFlag: String?, source: SourceOptions, security: SecurityOptions,
    run: RunOptions, defaults: Defaults, extra: (Settings) -> Void = { _ in }
  ) throws(SettingsProblems) -> ClientSettings {
    let settings = try Settings(file: run.config)
    let server = settings.value(
      "server", flag: serverFlag, default: defaults.server.flatMap { HostPort($0) }, allowed: "HOST:PORT (for example 127.0.0.1:50001)",
      shown: { $0?.description ?? "~" }
    ) { HostPort($0) }
    if server == nil { settings.problem("server", "missing: give the server's address, HOST:PORT") }
    let clientSecurity = security.read(settings)
    let values = run.read(settings, defaultWindow: defaults.window)

    var cameras: [Camera] = []
    var deviceGiven = false
    let records = defaults.gateway ? settings.records("cameras") : []
    if records.isEmpty {
      let given = settings.string("device", flag: deviceFlag, default: nil)
      deviceGiven = given != nil
      let device = given ?? defaults.device
      let reading = SourceReading(
        text: { key, flag in settings.string(key, flag: flag, default: nil, masked: Self.masking(key)) },
        problem: { key, message in
          key == "source" ? settings.problem(message: message) : settings.problem(key, message)
        })
      let spec = reading.spec(source.given)
      if let device {
        if let id = deviceID(device, problem: { settings.problem("device", $0) }), let spec {
          cameras.append(Camera(device: id, source: spec))
        }
      } else {
        settings.problem("device", "missing: name the camera with --device ID (or device: in the file, or cameras: for several)")
      }
    } else {
      if deviceFlag != nil || source.given.rtsp != nil || source.given.v4l2 != nil || source.given.file != nil {
        settings.problem(message: "cameras: in \(run.config ?? "the file") lists the cameras; --device and source flags are for one camera: use one or the other")
      }
      var seen = Set<String>()
      for record in records {
        guard let device = record.string("device") else {
          record.problem("device: missing (each camera needs its device id)")
          record.finish(knownFields: SourceReading.keys.union(["device"]))
          continue
        }
        let reading = SourceReading(
          text: { key, _ in record.string(key, masked: Self.masking(key)) },
          problem: { key, message in key == "source" ? record.problem(message) : record.problem(key, message) })
        let spec = reading.spec(SourceReading.Flags())
        record.finish(knownFields: SourceReading.keys.union(["device"]))
        guard let id = deviceID(device, problem: { record.problem("device", $0) }), let spec else { continue }
        guard seen.insert(id.rawValue).inserted else {
          record.problem("device", "\(id) is listed twice: each camera needs a device id of its own")
          continue
        }
        cameras.append(Camera(device: id, source: spec))
      }
    }
    extra(settings)
    try settings.finish()
    return ClientSettings(server: server!, cameras: cameras, deviceGiven: deviceGiven, security: clientSecurity, run: values, yaml: settings.yaml())
  }

  /// An RTSP URL is shown without its password.
  private static func masking(_ key: String) -> ((String) -> String)? {
    key == "rtsp" ? { SourceSpec.withoutCredentials($0) } : nil
  }

  private static func deviceID(_ text: String, problem: (String) -> Void) -> DeviceID? {
    do { return try DeviceID(validating: text) } catch {
      problem("\"\(text)\": \(error)")
      return nil
    }
  }

  /// Each camera's publisher configuration, and the connection several cameras share (a Service to
  /// run alongside them).
  func configurations(pictures: PictureRequest? = nil) throws -> ([PublisherConfiguration], SharedConnection?) {
    let shared = cameras.count > 1 ? try SharedConnection(server: server, security: security) : nil
    let configurations = cameras.map { camera in
      var configuration = PublisherConfiguration(server: server, device: camera.device, source: camera.source)
      run.apply(to: &configuration, cameras: cameras.count)
      configuration.security = security
      configuration.connection = shared
      configuration.reportsStatus = cameras.count == 1
      configuration.pictures = pictures
      return configuration
    }
    return (configurations, shared)
  }
}

extension ClientSettings {
  /// Reads the settings, or prints every problem and exits 2; with --print-config, prints and exits 0.
  static func readOrExit(
    server: String?, device: String?, source: SourceOptions, security: SecurityOptions, run: RunOptions,
    defaults: Defaults, extra: (Settings) -> Void = { _ in }
  ) -> ClientSettings {
    let settings: ClientSettings
    do {
      settings = try read(
        server: server, device: device, source: source, security: security, run: run, defaults: defaults, extra: extra)
    } catch {
      for line in error.lines { FileHandle.standardError.write(Data("relay-client: \(line)\n".utf8)) }
      exit(2)
    }
    if run.printConfig {
      FileHandle.standardOutput.write(Data(settings.yaml.utf8))
      exit(0)
    }
    return settings
  }
}
