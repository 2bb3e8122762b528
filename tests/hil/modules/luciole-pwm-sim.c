// SPDX-License-Identifier: GPL-2.0
/*
 * luciole-pwm-sim: a simulated PWM controller for the Luciole emulated-hardware test.
 *
 * One platform device "luciole-pwm-sim" with one pwm_chip of two channels. .apply copies the
 * requested state into the driver's own per-channel "hardware registers" (what a real
 * controller would latch), .get_state reads them back, and the read-only attribute
 * /sys/devices/platform/luciole-pwm-sim/sim_state shows them, one line per channel:
 *   "<channel> <period_ns> <duty_ns> <normal|inversed> <0|1>"
 * The test reads that file, not the pwm sysfs files the program under test writes.
 */
#include <linux/device.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/pwm.h>
#include <linux/sysfs.h>

#define SIM_NAME "luciole-pwm-sim"
#define SIM_NPWM 2

struct sim_pwm {
	struct pwm_chip chip;
	struct mutex lock;		/* protects regs */
	struct pwm_state regs[SIM_NPWM];	/* the simulated hardware registers */
};

static struct sim_pwm *to_sim(struct pwm_chip *chip)
{
	return container_of(chip, struct sim_pwm, chip);
}

static int sim_apply(struct pwm_chip *chip, struct pwm_device *pwm,
		     const struct pwm_state *state)
{
	struct sim_pwm *sim = to_sim(chip);

	mutex_lock(&sim->lock);
	sim->regs[pwm->hwpwm] = *state;
	mutex_unlock(&sim->lock);
	return 0;
}

static int sim_get_state(struct pwm_chip *chip, struct pwm_device *pwm,
			 struct pwm_state *state)
{
	struct sim_pwm *sim = to_sim(chip);

	mutex_lock(&sim->lock);
	*state = sim->regs[pwm->hwpwm];
	mutex_unlock(&sim->lock);
	return 0;
}

static const struct pwm_ops sim_ops = {
	.apply = sim_apply,
	.get_state = sim_get_state,
	.owner = THIS_MODULE,
};

static ssize_t sim_state_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct sim_pwm *sim = dev_get_drvdata(dev);
	int i, n = 0;

	mutex_lock(&sim->lock);
	for (i = 0; i < SIM_NPWM; i++) {
		const struct pwm_state *s = &sim->regs[i];

		n += sysfs_emit_at(buf, n, "%d %llu %llu %s %d\n", i, s->period, s->duty_cycle,
				   s->polarity == PWM_POLARITY_INVERSED ? "inversed" : "normal",
				   s->enabled ? 1 : 0);
	}
	mutex_unlock(&sim->lock);
	return n;
}
static DEVICE_ATTR_RO(sim_state);

static struct attribute *sim_attrs[] = {
	&dev_attr_sim_state.attr,
	NULL,
};
ATTRIBUTE_GROUPS(sim);

static int sim_probe(struct platform_device *pdev)
{
	struct sim_pwm *sim;

	sim = devm_kzalloc(&pdev->dev, sizeof(*sim), GFP_KERNEL);
	if (!sim)
		return -ENOMEM;
	mutex_init(&sim->lock);
	sim->chip.dev = &pdev->dev;
	sim->chip.ops = &sim_ops;
	sim->chip.npwm = SIM_NPWM;
	platform_set_drvdata(pdev, sim);
	return devm_pwmchip_add(&pdev->dev, &sim->chip);
}

static struct platform_driver sim_driver = {
	.probe = sim_probe,
	.driver = {
		.name = SIM_NAME,
		.dev_groups = sim_groups,
	},
};

static struct platform_device *sim_pdev;

static int __init sim_init(void)
{
	int ret = platform_driver_register(&sim_driver);

	if (ret)
		return ret;
	sim_pdev = platform_device_register_simple(SIM_NAME, PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(sim_pdev)) {
		platform_driver_unregister(&sim_driver);
		return PTR_ERR(sim_pdev);
	}
	return 0;
}

static void __exit sim_exit(void)
{
	platform_device_unregister(sim_pdev);
	platform_driver_unregister(&sim_driver);
}

module_init(sim_init);
module_exit(sim_exit);
MODULE_DESCRIPTION("Simulated 2-channel PWM controller for the Luciole HIL test");
MODULE_LICENSE("GPL");
