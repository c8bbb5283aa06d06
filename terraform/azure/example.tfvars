# Copy to terraform.tfvars and edit. One copy of this root module per location; the first has
# shared = true. The VPN key comes from the environment: export TF_VAR_vpn_shared_key=...
cluster              = "ml-prod"
subscription_id      = "00000000-0000-0000-0000-000000000000"
location             = "eastus"
vnet_cidr            = "10.52.0.0/16"
onprem_cidrs         = ["10.0.0.0/12"]
harbor_host          = "harbor.example.org"
harbor_credentials   = "harbor"
admin_ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample ops@example.org"
vm_sizes             = ["Standard_ND96asr_v4", "Standard_NC24ads_A100_v4"]
user_data_template   = "builtin:slurm"
template_vars = {
  slurmctld_host       = "slurm-ctl.example.org"
  munge_key_secret_url = "https://mlprodjoin.vault.azure.net/secrets/munge-key"
}
# the same secret as a resource id: the node identity may read exactly this one
node_secret_ids = ["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml-prod-secrets/providers/Microsoft.KeyVault/vaults/mlprodjoin/secrets/munge-key"]

# A service principal the on-prem controller signs in with (AZURE_CLIENT_ID/...):
# controller_principal_ids = ["11111111-1111-1111-1111-111111111111"]

vpn = {
  onprem_gateway_ip = "203.0.113.10"
}
