//! The Raspberry Pi backend (cargo feature `rpi`): relay and dimmer through
//! `rppal`, for images that prefer it to the generic character-device and
//! sysfs drivers. The relay line is a BCM GPIO number; the dimmer channel is
//! rppal's PWM channel (0 to 3).

use std::time::Duration;

use rppal::gpio::{Gpio, OutputPin};
use rppal::pwm::{Channel, Polarity as RppalPolarity, Pwm};

use super::settings::{DimmerSettings, LineRef, Polarity, RelaySettings};
use super::{duty_for, Dimmer, LightError, Relay};

fn fail(what: impl Into<String>, err: impl std::fmt::Display) -> LightError {
    LightError::Rppal {
        what: what.into(),
        reason: err.to_string(),
    }
}

/// A relay on a BCM GPIO pin.
pub struct RppalRelay {
    pin: OutputPin,
    active_low: bool,
    on: bool,
}

impl RppalRelay {
    /// Claims the pin as an output, driving `on` at once.
    pub fn open(settings: &RelaySettings, on: bool) -> Result<Self, LightError> {
        let LineRef::Offset(number) = settings.line else {
            return Err(fail(
                "relay",
                "lighting.relay.line must be a BCM GPIO number with backend = \"rppal\"",
            ));
        };
        let number = u8::try_from(number).map_err(|e| fail(format!("GPIO {number}"), e))?;
        let gpio = Gpio::new().map_err(|e| fail("GPIO", e))?;
        let pin = gpio
            .get(number)
            .map_err(|e| fail(format!("GPIO {number}"), e))?;
        // Released on exit, the pin returns to an input: the relay's
        // hardware default (wired fail-on) takes over.
        let mut relay = RppalRelay {
            pin: pin.into_output(),
            active_low: settings.active_low,
            on,
        };
        relay.set(on)?;
        Ok(relay)
    }
}

impl Relay for RppalRelay {
    fn set(&mut self, on: bool) -> Result<(), LightError> {
        if on != self.active_low {
            self.pin.set_high();
        } else {
            self.pin.set_low();
        }
        self.on = on;
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on
    }
}

/// A dimmer on one of the Pi's PWM channels.
pub struct RppalPwm {
    pwm: Pwm,
    period_ns: u64,
    duty_ns: u64,
    polarity: Polarity,
}

impl RppalPwm {
    /// Configures the channel and starts it at `level`.
    pub fn open(settings: &DimmerSettings, level: f64) -> Result<Self, LightError> {
        let channel = match settings.channel {
            0 => Channel::Pwm0,
            1 => Channel::Pwm1,
            2 => Channel::Pwm2,
            3 => Channel::Pwm3,
            other => return Err(fail(format!("PWM channel {other}"), "must be 0 to 3")),
        };
        let duty_ns = duty_for(level, settings.period_ns);
        let polarity = match settings.polarity {
            Polarity::Normal => RppalPolarity::Normal,
            Polarity::Inversed => RppalPolarity::Inverse,
        };
        let mut pwm = Pwm::with_period(
            channel,
            Duration::from_nanos(settings.period_ns),
            Duration::from_nanos(duty_ns),
            polarity,
            true,
        )
        .map_err(|e| fail(format!("PWM channel {}", settings.channel), e))?;
        // Keep the last state on exit: the safe level stays on.
        pwm.set_reset_on_drop(false);
        Ok(RppalPwm {
            pwm,
            period_ns: settings.period_ns,
            duty_ns,
            polarity: settings.polarity,
        })
    }
}

impl Dimmer for RppalPwm {
    fn set_level(&mut self, level: f64) -> Result<(), LightError> {
        let duty_ns = duty_for(level, self.period_ns);
        self.pwm
            .set_pulse_width(Duration::from_nanos(duty_ns))
            .map_err(|e| fail("PWM pulse width", e))?;
        self.duty_ns = duty_ns;
        Ok(())
    }

    fn period_ns(&self) -> u64 {
        self.period_ns
    }

    fn duty_ns(&self) -> u64 {
        self.duty_ns
    }

    fn polarity(&self) -> Polarity {
        self.polarity
    }
}
