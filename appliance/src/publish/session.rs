//! One broker connection in either protocol version rumqttc speaks (MQTT
//! 3.1.1 or 5), seen by the publisher through the same few steps:
//! connected, a publish got its packet id, a PUBACK arrived (or, in MQTT 5,
//! a refusal), a failure (already explained for people), closed.
//!
//! Credentials and TLS files are read when the session opens and again
//! before every reconnection ([`Connection::prepare_retry`]), so a corrected
//! password file, CA or client certificate takes effect without a restart.

use rumqttc::{QoS, TlsConfiguration, Transport};

use crate::events::Origin;

use super::{describe, explain, pem, read, Failure, MqttSettings, PublishError};

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1: every broker speaks it.
    V311,
    /// MQTT 5.
    V5,
}

/// What happened on the connection.
#[derive(Debug)]
pub enum Step {
    /// The broker accepted the connection; with MQTT 5 it may say the
    /// largest packet it accepts.
    Connected { broker_max_packet: Option<u32> },
    /// A QoS 1 publish went out with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The broker answered a publish with an error reason (MQTT 5 PUBACK,
    /// reason code 0x80 or above): it will not take that message. rumqttc
    /// does not say which packet id; the refused one is the publish sent
    /// and not acknowledged that is not among `still_held`, the packet ids
    /// rumqttc still held. A [`Step::Failed`] follows: rumqttc ends the
    /// connection.
    Refused {
        still_held: Vec<u16>,
        reason: String,
    },
    /// The broker sent a packet over `mqtt.max_packet_bytes` (a command
    /// anyone with write access to a command topic could publish): rumqttc
    /// ends the connection, and that is no event's fault. A
    /// [`Step::Failed`] follows.
    IncomingTooLarge,
    /// The connection failed; the text says why in configuration terms.
    Failed(String),
    /// A message arrived on a subscribed topic (a command).
    Received(Received),
    /// The broker answered a subscription: granted (every filter) or not.
    Subscribed(bool),
    /// We disconnected on purpose.
    Closed,
    /// Anything else (pings, presence acknowledgements of other kinds...).
    Other,
}

/// A message received on a subscribed topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    /// MQTT 5 response topic, if the sender gave one.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data, if the sender gave some.
    pub correlation: Option<Vec<u8>>,
}

/// A handle to publish through: requests are queued on rumqttc's channel
/// and sent by whoever drives the [`Connection`].
#[derive(Clone)]
pub enum Session {
    V311(rumqttc::Client),
    V5(rumqttc::v5::Client),
}

/// The connection's event loop, driven by one thread.
pub enum Connection {
    V311(Box<rumqttc::Connection>),
    V5(Box<rumqttc::v5::Connection>),
}

impl Session {
    /// Queues a QoS 1 publish; false when the queue is full.
    pub fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> bool {
        match self {
            Session::V311(client) => client
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .is_ok(),
            Session::V5(client) => client
                .try_publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .is_ok(),
        }
    }

    /// Queues a QoS 0 publish outside the publisher's bookkeeping (a
    /// command's response), with MQTT 5 correlation data when given; false
    /// when the queue is full.
    pub fn reply(&self, topic: &str, payload: Vec<u8>, correlation: Option<Vec<u8>>) -> bool {
        match self {
            Session::V311(client) => client
                .try_publish(topic, QoS::AtMostOnce, false, payload)
                .is_ok(),
            Session::V5(client) => {
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    correlation_data: correlation.map(Into::into),
                    ..Default::default()
                };
                client
                    .try_publish_with_properties(
                        topic,
                        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                        false,
                        payload,
                        properties,
                    )
                    .is_ok()
            }
        }
    }

    /// Queues a QoS 1 subscription to each filter; false when the queue is
    /// full.
    pub fn subscribe(&self, filters: &[String]) -> bool {
        filters.iter().all(|filter| match self {
            Session::V311(client) => client
                .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                .is_ok(),
            Session::V5(client) => client
                .try_subscribe(filter.clone(), rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
        })
    }

    /// Asks for a clean disconnect (no last will).
    pub fn disconnect(&self) {
        let _ = match self {
            Session::V311(client) => client.try_disconnect().is_ok(),
            Session::V5(client) => client.try_disconnect().is_ok(),
        };
    }
}

impl Connection {
    /// Waits for what happens next: usually one step, several after an
    /// MQTT 5 refusal; `None` once every session handle is gone.
    pub fn next(&mut self, settings: &MqttSettings) -> Option<Vec<Step>> {
        use rumqttc::{Event, Incoming, Outgoing};
        match self {
            Connection::V311(connection) => Some(vec![match connection.recv().ok()? {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => Step::Connected {
                    broker_max_packet: None,
                },
                // Packet id 0: a QoS 0 reply, not the publisher's.
                Ok(Event::Outgoing(Outgoing::Publish(0))) => Step::Other,
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Step::Sent(pkid),
                Ok(Event::Incoming(Incoming::PubAck(ack))) => Step::Acked(ack.pkid),
                Ok(Event::Incoming(Incoming::SubAck(ack))) => Step::Subscribed(
                    ack.return_codes
                        .iter()
                        .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                ),
                Ok(Event::Incoming(Incoming::Publish(publish))) => Step::Received(Received {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                    response_topic: None,
                    correlation: None,
                }),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => Step::Closed,
                Ok(_) => Step::Other,
                Err(
                    err @ rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_),
                    )),
                ) => {
                    return Some(vec![
                        Step::IncomingTooLarge,
                        Step::Failed(explain(&err, settings)),
                    ])
                }
                Err(err) => Step::Failed(explain(&err, settings)),
            }]),
            Connection::V5(connection) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::{ConnectionError, Event, Request, StateError};
                let step = match connection.recv().ok()? {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => Step::Connected {
                        broker_max_packet: ack.properties.and_then(|p| p.max_packet_size),
                    },
                    Ok(Event::Outgoing(Outgoing::Publish(0))) => Step::Other,
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Step::Sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Step::Acked(ack.pkid),
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        Step::Subscribed(ack.return_codes.iter().all(|c| {
                            matches!(
                                c,
                                rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                            )
                        }))
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let properties = publish.properties.unwrap_or_default();
                        Step::Received(Received {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload.to_vec(),
                            response_topic: properties.response_topic,
                            correlation: properties.correlation_data.map(|c| c.to_vec()),
                        })
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Step::Closed,
                    Ok(_) => Step::Other,
                    Err(ConnectionError::MqttState(StateError::PubAckFail { reason })) => {
                        // rumqttc ends the connection on a PUBACK with an
                        // error reason, without its packet id. What it read
                        // before comes first (acknowledgements, packet ids);
                        // then the refused publish is the one in flight that
                        // rumqttc no longer holds.
                        let eventloop = &mut connection.eventloop;
                        let mut steps = Vec::new();
                        while let Some(event) = eventloop.state.events.pop_front() {
                            match event {
                                Event::Incoming(Packet::PubAck(ack)) => {
                                    steps.push(Step::Acked(ack.pkid))
                                }
                                Event::Outgoing(Outgoing::Publish(pkid)) => {
                                    steps.push(Step::Sent(pkid))
                                }
                                _ => {}
                            }
                        }
                        let still_held = eventloop
                            .pending
                            .iter()
                            .filter_map(|request| match request {
                                Request::Publish(p) if p.pkid != 0 => Some(p.pkid),
                                _ => None,
                            })
                            .collect();
                        steps.push(Step::Refused {
                            still_held,
                            reason: format!("{reason:?}"),
                        });
                        steps.push(Step::Failed(format!(
                            "broker {}:{}: the connection ends after a refusal; reconnecting",
                            settings.host, settings.port
                        )));
                        return Some(steps);
                    }
                    Err(
                        err @ ConnectionError::MqttState(StateError::IncomingPacketTooLarge {
                            ..
                        }),
                    ) => {
                        return Some(vec![
                            Step::IncomingTooLarge,
                            Step::Failed(explain_v5(&err, settings)),
                        ])
                    }
                    Err(err) => Step::Failed(explain_v5(&err, settings)),
                };
                Some(vec![step])
            }
        }
    }

    /// Gets ready for the next attempt after a failure: forgets what was in
    /// flight ([`Connection::forget_in_flight`]) and reads the credentials
    /// and TLS files again, so that a corrected file takes effect. A file
    /// that cannot be read now is reported and the last good one is kept.
    pub fn prepare_retry(&mut self, settings: &MqttSettings) {
        self.forget_in_flight();
        let material = match material(settings) {
            Ok(material) => material,
            Err(err) => {
                tracing::error!("{err}; trying again with the last readable one");
                return;
            }
        };
        match self {
            Connection::V311(connection) => {
                let options = &mut connection.eventloop.mqtt_options;
                options.set_transport(material.transport);
                if let (Some(user), Some(password)) = (&settings.username, material.password) {
                    options.set_credentials(user, password);
                }
            }
            Connection::V5(connection) => {
                let options = &mut connection.eventloop.options;
                options.set_transport(material.transport);
                if let (Some(user), Some(password)) = (&settings.username, material.password) {
                    options.set_credentials(user, password);
                }
            }
        }
    }

    /// Forgets what was queued or in flight, including requests still in
    /// rumqttc's channel: the publisher offers it again, in order, after
    /// reconnecting. Called only once the publishing thread has seen the
    /// failure (see [`super`]), so nothing it queued before can slip onto the
    /// next connection.
    pub fn forget_in_flight(&mut self) {
        match self {
            // `clean` moves unacknowledged publishes and queued requests to
            // `pending`, which is then dropped. Notifications rumqttc still
            // buffers (a publish's packet id, a PUBACK read before the
            // failure) belong to the lost connection: reported after the
            // next CONNACK they would pair packet ids with the wrong
            // events. A collision held back for the lost connection would
            // stall the next one.
            Connection::V311(connection) => {
                let eventloop = &mut connection.eventloop;
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
            }
            Connection::V5(connection) => {
                let eventloop = &mut connection.eventloop;
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
            }
        }
    }
}

/// Files and secrets the settings point to, read at start and before each
/// reconnection.
struct Material {
    password: Option<String>,
    transport: Transport,
}

fn material(settings: &MqttSettings) -> Result<Material, PublishError> {
    let password = match (&settings.username, &settings.password_file) {
        (Some(_), Some(path)) => {
            let text = read("mqtt.password_file", path)?;
            Some(
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        }
        (Some(_), None) => Some(String::new()),
        _ => None,
    };
    let transport = match &settings.tls {
        Some(tls) => {
            let ca = pem("mqtt.ca_file", &tls.ca_file, "BEGIN CERTIFICATE")?;
            let client_auth = match &tls.client_cert {
                Some((cert, key)) => Some((
                    pem("mqtt.client_cert_file", cert, "BEGIN CERTIFICATE")?,
                    pem("mqtt.client_key_file", key, "PRIVATE KEY")?,
                )),
                None => None,
            };
            Transport::Tls(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            })
        }
        None => Transport::Tcp,
    };
    Ok(Material {
        password,
        transport,
    })
}

/// Connects nothing yet: builds the session and the event loop that will
/// connect when first driven. The last will marks the pole `offline`.
pub fn open(
    settings: &MqttSettings,
    origin: &Origin,
) -> Result<(Session, Connection), PublishError> {
    let material = material(settings)?;
    let will_topic = origin.presence_topic(&settings.topic_prefix);
    let will = origin.presence("offline");
    // The publisher's window, its presence message, the command
    // subscriptions and a few replies.
    let queue = usize::from(settings.inflight) + 16;
    match settings.protocol {
        Protocol::V311 => {
            let mut options =
                rumqttc::MqttOptions::new(&settings.client_id, &settings.host, settings.port);
            options
                .set_keep_alive(settings.keep_alive)
                .set_clean_session(true)
                .set_inflight(settings.inflight)
                .set_max_packet_size(
                    settings.max_packet_bytes as usize,
                    settings.max_packet_bytes as usize,
                )
                .set_transport(material.transport)
                .set_last_will(rumqttc::LastWill::new(
                    will_topic,
                    will,
                    QoS::AtLeastOnce,
                    true,
                ));
            if let (Some(user), Some(password)) = (&settings.username, material.password) {
                options.set_credentials(user, password);
            }
            let (client, mut connection) = rumqttc::Client::new(options, queue);
            connection
                .eventloop
                .network_options
                .set_connection_timeout(CONNECT_TIMEOUT_S);
            Ok((
                Session::V311(client),
                Connection::V311(Box::new(connection)),
            ))
        }
        Protocol::V5 => {
            use rumqttc::v5::mqttbytes::{v5::LastWill, QoS as QoS5};
            let mut options =
                rumqttc::v5::MqttOptions::new(&settings.client_id, &settings.host, settings.port);
            options
                .set_keep_alive(settings.keep_alive)
                .set_clean_start(true)
                .set_outgoing_inflight_upper_limit(settings.inflight)
                // What the pole accepts; what it sends is bounded by
                // `max_packet_bytes` in the publisher and by the broker's
                // own maximum, which its CONNACK gives rumqttc.
                .set_max_packet_size(Some(settings.max_packet_bytes))
                .set_connection_timeout(CONNECT_TIMEOUT_S)
                .set_transport(material.transport)
                .set_last_will(LastWill::new(
                    will_topic,
                    will,
                    QoS5::AtLeastOnce,
                    true,
                    None,
                ));
            if let (Some(user), Some(password)) = (&settings.username, material.password) {
                options.set_credentials(user, password);
            }
            let (client, connection) = rumqttc::v5::Client::new(options, queue);
            Ok((Session::V5(client), Connection::V5(Box::new(connection))))
        }
    }
}

/// Bytes of the QoS 1 PUBLISH packet carrying `payload` bytes on `topic`:
/// fixed header (type byte and remaining length), topic, packet id, the
/// (empty) property list in MQTT 5, payload. What rumqttc and brokers
/// compare with their maximum packet size.
pub fn packet_bytes(protocol: Protocol, topic: &str, payload: usize) -> usize {
    let properties = match protocol {
        Protocol::V311 => 0,
        Protocol::V5 => 1,
    };
    let remaining = 2 + topic.len() + 2 + properties + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// Seconds allowed for TCP, TLS and CONNACK together.
const CONNECT_TIMEOUT_S: u64 = 5;

/// [`super::explain`] for MQTT 5 connection errors.
pub fn explain_v5(err: &rumqttc::v5::ConnectionError, settings: &MqttSettings) -> String {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
    use rumqttc::v5::ConnectionError;
    let failure = match err {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => Failure::Credentials(code),
        ConnectionError::ConnectionRefused(code) => Failure::Refused(code),
        ConnectionError::Tls(e) => Failure::Tls(e),
        ConnectionError::Io(e) => Failure::Io(e),
        other => Failure::Other(other),
    };
    describe(failure, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MqttSettings {
        let origin = Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        };
        // A port nothing listens on: these tests never connect.
        let mut settings = MqttSettings::new("127.0.0.1".into(), &origin, None);
        settings.port = 9;
        settings
    }

    #[test]
    fn packet_sizes_are_counted_as_rumqttc_checks_them() {
        use rumqttc::v5::mqttbytes::v5::Publish as Publish5;
        use rumqttc::v5::mqttbytes::QoS as QoS5;
        for payload in [0, 100, 126, 127, 10_000, 16_383, 20_000, 2_100_000] {
            let topic = "luciole/lyon/pole-7/events/flow";
            let body = vec![b'x'; payload];
            let mut v4 = rumqttc::Publish::new(topic, QoS::AtLeastOnce, body.clone());
            v4.pkid = 1;
            let mut v5 = Publish5::new(topic, QoS5::AtLeastOnce, body, None);
            v5.pkid = 1;
            assert_eq!(
                packet_bytes(Protocol::V311, topic, payload),
                v4.size(),
                "3.1.1, {payload}"
            );
            assert_eq!(
                packet_bytes(Protocol::V5, topic, payload),
                v5.size(),
                "5, {payload}"
            );
        }
    }

    #[test]
    fn forgetting_drops_requests_and_notifications_left_by_the_lost_connection() {
        let origin = Origin {
            site: "lyon".into(),
            device: "pole-7".into(),
        };
        for protocol in [Protocol::V311, Protocol::V5] {
            let mut settings = settings();
            settings.protocol = protocol;
            let (session, mut connection) = open(&settings, &origin).unwrap();
            assert!(session.publish("a/b".into(), false, b"queued".to_vec()));
            match &mut connection {
                Connection::V311(c) => c
                    .eventloop
                    .state
                    .events
                    .push_back(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(7))),
                Connection::V5(c) => c
                    .eventloop
                    .state
                    .events
                    .push_back(rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(7))),
            }
            connection.forget_in_flight();
            let (pending, events) = match &connection {
                Connection::V311(c) => (c.eventloop.pending.len(), c.eventloop.state.events.len()),
                Connection::V5(c) => (c.eventloop.pending.len(), c.eventloop.state.events.len()),
            };
            assert_eq!((pending, events), (0, 0), "{protocol:?}");
        }
    }
}
