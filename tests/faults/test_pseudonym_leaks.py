"""The IoT pipeline's leak scan (no clear patient id on any topic, in any database row, lake file or the
worker log after a simulated run) is part of the fault suite: the same test and fixtures, imported."""

from tests.iot.test_iot_e2e import (  # noqa: F401  (the test and the module fixtures it needs)
    lake,
    pg_url,
    simulated_run,
    test_no_clear_patient_id_anywhere_after_a_simulated_run,
    worker,
)
