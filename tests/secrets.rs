//! Secrets never reach output: a value the config took from the environment
//! (`${NAME}`) is not echoed by a config error, nor by librdkafka refusing
//! it as a property, in anything `modelbus` prints. No broker is needed:
//! librdkafka refuses the properties when the client is created.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished `modelbus` command printed.
struct Finished {
    success: bool,
    output: String,
}

/// Runs `modelbus <args> --config <config>` with `env`, at debug log level
/// (so librdkafka's own log lines are printed too), and collects stdout and
/// stderr. Output goes to files: nothing can block on a full pipe.
fn modelbus(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Finished {
    let dir = config.parent().unwrap();
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let mut cmd: Command = common::modelbus();
    let mut child = cmd
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`modelbus {}` did not finish within 60 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    Finished { success: status.success(), output }
}

/// The claims example with `edit` applied to its config file.
fn claims_config(edit: impl FnOnce(String) -> String) -> (common::Claims, std::path::PathBuf) {
    let claims = common::claims(|text| text);
    let path = claims.config_path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    (claims, path)
}

fn assert_absent(output: &str, fragments: &[&str]) {
    for f in fragments {
        assert!(!output.contains(f), "`{f}` was printed:\n{output}");
    }
}

/// Starts with a digit so the duration parser reads on into the letters
/// and quotes them as an unknown unit: a fragment of the secret.
const DURATION_SECRET: &str = "7sekritZq93xv";
const COUNT_SECRET: &str = "hunter2-Vb81Lm";

#[test]
fn validate_names_the_variable_not_its_value() {
    let (_claims, config) = claims_config(|text| {
        text.replace(
            "partitions = 4",
            "partitions = \"${MODELBUS_TEST_COUNT}\"\nsession_timeout = \"${MODELBUS_TEST_DURATION}\"",
        )
    });
    let env = [("MODELBUS_TEST_DURATION", DURATION_SECRET), ("MODELBUS_TEST_COUNT", COUNT_SECRET)];
    let run = modelbus(&["validate"], &config, &env);
    assert!(!run.success, "{}", run.output);
    assert!(run.output.contains("bus.embedded.session_timeout"), "{}", run.output);
    assert!(run.output.contains("bus.embedded.partitions"), "{}", run.output);
    assert!(run.output.contains("${MODELBUS_TEST_DURATION}"), "{}", run.output);
    assert!(run.output.contains("${MODELBUS_TEST_COUNT}"), "{}", run.output);
    assert!(run.output.contains("unknown time unit \"<redacted>\""), "{}", run.output);
    assert_absent(&run.output, &[DURATION_SECRET, "sekrit", "Zq93xv", COUNT_SECRET, "hunter2", "Vb81Lm"]);
}

/// The example pointed at a Kafka broker that is never reached, with extra
/// client properties.
fn kafka_config(properties: &str) -> impl FnOnce(String) -> String + '_ {
    move |text| {
        text.replace("[bus]\nkind = \"embedded\"", "[bus]\nkind = \"kafka\"")
            + &format!("\n[bus.kafka]\nbrokers = \"127.0.0.1:9\"\n\n[bus.kafka.properties]\n{properties}\n")
    }
}

#[test]
fn a_refused_kafka_property_is_named_without_its_value() {
    const SECRET: &str = "s3cr3t-Kw27pq";
    let (_claims, config) = claims_config(kafka_config("\"socket.timeout.ms\" = \"${MODELBUS_TEST_SECRET}\""));
    let run = modelbus(&["run"], &config, &[("MODELBUS_TEST_SECRET", SECRET)]);
    assert!(!run.success, "{}", run.output);
    assert!(run.output.contains("socket.timeout.ms"), "{}", run.output);
    assert_absent(&run.output, &[SECRET, "Kw27pq"]);
}

#[test]
fn a_refused_sasl_mechanism_does_not_show_the_password() {
    const SECRET: &str = "pa55-Hx61rt";
    let properties = "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
                      \"sasl.username\" = \"modelbus\"\n\
                      \"sasl.password\" = \"${MODELBUS_TEST_SECRET}\"\n\
                      \"sasl.mechanism\" = \"${MODELBUS_TEST_SECRET}\"";
    let (_claims, config) = claims_config(kafka_config(properties));
    let run = modelbus(&["run"], &config, &[("MODELBUS_TEST_SECRET", SECRET)]);
    assert!(!run.success, "{}", run.output);
    assert!(run.output.contains("Unsupported SASL mechanism: ${MODELBUS_TEST_SECRET}"), "{}", run.output);
    assert_absent(&run.output, &[SECRET, "Hx61rt"]);
}
