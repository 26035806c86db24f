package kvxsdk

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// fakeCredentials signs requests the fake cloud does not check.
func fakeCredentials(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDWORKPROOF", SecretAccessKey: "workproof", Source: "kvxsdk"}, nil
}
