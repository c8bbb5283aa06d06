"""AwsProvider.validate() and AwsSettings: every bad key is named before any launch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from burst.errors import ConfigError
from providers.aws import AwsProvider, AwsRegionSettings, AwsSettings
from tests.aws.helpers import CLUSTER
from tests.support.moto_server import MotoServer


def validate(settings: AwsSettings, *types: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        AwsProvider(settings, cluster=CLUSTER).validate(types)
    return err.value


def test_good_settings_pass(aws_settings: Callable[..., AwsSettings], moto: MotoServer) -> None:
    AwsProvider(aws_settings(), cluster=CLUSTER).validate(["g5.xlarge"])
    assert moto.count("RunInstances") == 0


def test_unknown_region(aws_settings: Callable[..., AwsSettings]) -> None:
    base = aws_settings()
    regions = {**base.regions, "xx-fake-1": base.regions["us-west-2"]}
    err = validate(base.model_copy(update={"regions": regions}))
    assert err.where == "aws.regions.xx-fake-1" and "unknown EC2 region" in err.message


def test_missing_explicit_ami(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(west={"ami": "ami-0000000000000dead"}))
    assert err.where == "aws.regions.us-west-2.ami" and "ami-0000000000000dead" in err.message


def test_missing_ssm_ami(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(east={"ami": "resolve:ssm:/burst/no/such/ami"}))
    assert err.where == "aws.regions.us-east-1.ami" and "/burst/no/such/ami" in err.message


def test_missing_subnet(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(east={"subnets": {"use1-az1": "subnet-0000000000000dead"}}))
    assert err.where == "aws.regions.us-east-1.subnets.use1-az1"
    assert "subnet-0000000000000dead does not exist" in err.message


def test_subnet_in_another_az(aws_settings: Callable[..., AwsSettings]) -> None:
    east = aws_settings().regions["us-east-1"].subnets
    err = validate(aws_settings(east={"subnets": {"use1-az1": east["use1-az2"]}}))
    assert err.where == "aws.regions.us-east-1.subnets.use1-az1" and "use1-az2" in err.message


def test_unknown_zone_key(aws_settings: Callable[..., AwsSettings]) -> None:
    east = aws_settings().regions["us-east-1"].subnets
    err = validate(aws_settings(east={"subnets": {"use1-az77": east["use1-az2"]}}))
    assert err.where == "aws.regions.us-east-1.subnets.use1-az77"


def test_missing_security_group(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(west={"security_group_ids": ["sg-0000000000000dead"]}))
    assert err.where == "aws.regions.us-west-2.security_group_ids[0]"


def test_missing_instance_profile(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(east={"instance_profile": "burst-no-such-profile"}))
    assert err.where == "aws.regions.us-east-1.instance_profile" and "burst-no-such-profile" in err.message
    # by ARN: the name is its last path segment
    err = validate(aws_settings(west={"instance_profile": "arn:aws:iam::123456789012:instance-profile/x/gone"}))
    assert err.where == "aws.regions.us-west-2.instance_profile" and "'gone'" in err.message


def test_existing_instance_profile_by_name_and_arn_pass(aws_settings: Callable[..., AwsSettings]) -> None:
    base = aws_settings()
    profile = base.regions["us-east-1"].instance_profile
    assert profile
    AwsProvider(aws_settings(west={"instance_profile": f"arn:aws:iam::123456789012:instance-profile/{profile}"}),
                cluster=CLUSTER).validate()


def test_missing_key_pair(aws_settings: Callable[..., AwsSettings], moto: MotoServer) -> None:
    err = validate(aws_settings(east={"key_name": "nobody"}))
    assert err.where == "aws.regions.us-east-1.key_name" and "'nobody'" in err.message
    import boto3

    boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.endpoint_url).create_key_pair(KeyName="ops")
    AwsProvider(aws_settings(east={"key_name": "ops"}), cluster=CLUSTER).validate()


def test_type_not_offered(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(east={"instance_types": ["p4d.24xlarge", "p9.bogus"]}))
    assert err.where == "aws.regions.us-east-1.instance_types" and "p9.bogus" in err.message


def test_type_not_offered_in_any_configured_subnet(aws_settings: Callable[..., AwsSettings]) -> None:
    east = aws_settings().regions["us-east-1"].subnets
    # moto (like EC2) offers p4d.24xlarge in use1-az1/2/4/6 but not in use1-az3
    err = validate(aws_settings(east={"subnets": {"use1-az3": east["use1-az3"]}, "instance_types": ["p4d.24xlarge"]}))
    assert err.where == "aws.regions.us-east-1.instance_types"
    assert "not offered in any configured subnet's AZ" in err.message


def test_types_passed_to_validate_are_checked_in_every_region(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(), "p9.bogus")
    assert err.where == "aws.regions.us-east-1.instance_types"
    assert "aws.regions.us-west-2.instance_types" in err.message  # the others are listed too


def test_template_with_unknown_variable(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(user_data_template="#!/bin/sh\necho $no_such_var\n"))
    assert err.where == "aws.user_data_template" and "$no_such_var" in err.message


def test_template_missing_file(aws_settings: Callable[..., AwsSettings]) -> None:
    err = validate(aws_settings(user_data_template="/nonexistent/userdata.sh"))
    assert err.where == "aws.user_data_template"


def test_settings_model_rejects_bad_input(aws_settings: Callable[..., AwsSettings]) -> None:
    good = aws_settings().regions["us-east-1"]
    with pytest.raises(ValidationError, match="extra"):
        AwsSettings(regions={"us-east-1": good}, bogus_key=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="ami"):
        AwsRegionSettings(ami="ubuntu-22.04", subnets={"use1-az1": "subnet-1"})
    with pytest.raises(ValidationError, match="subnet"):
        AwsRegionSettings(ami="ami-1", subnets={"use1-az1": "sg-1"})
    with pytest.raises(ValidationError, match="region"):
        AwsSettings(regions={})
    with pytest.raises(ValidationError, match="redefine"):
        AwsSettings(regions={"us-east-1": good}, template_vars={"cluster": "x"})
    with pytest.raises(ValidationError, match="unsafe"):
        AwsSettings(regions={"us-east-1": good}, template_vars={"x": "a; rm -rf /"})
    with pytest.raises(ConfigError):
        AwsProvider(aws_settings(), cluster="")


def test_auth_failure_during_validate_is_not_a_config_error(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer
) -> None:
    from burst.errors import PermanentProviderError
    from tests.support.moto_server import Fault

    moto.inject(Fault(action="DescribeRegions", code="AuthFailure", status=401))
    with pytest.raises(PermanentProviderError) as err:
        AwsProvider(aws_settings(), cluster=CLUSTER).validate()
    assert not isinstance(err.value, ConfigError) and err.value.code == "AuthFailure"


def test_importing_the_provider_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, providers.aws, providers.errors; sys.exit('boto3' in sys.modules or 'botocore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
