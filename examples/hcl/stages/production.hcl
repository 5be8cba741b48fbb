# The production stage of the shop, on AWS ECS, written in HCL.
# It holds exactly what a TOML stage file holds; tests/fixtures/hcl/production.toml is its twin.

runtime {
  kind             = "ecs"
  region           = "eu-central-1"
  cluster          = "shop-production"
  subnets          = ["subnet-0abc", "subnet-0def"]
  security_groups  = ["sg-0123"]
  assign_public_ip = false
  execution_role   = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
  task_role        = "arn:aws:iam::123456789012:role/shop-task"
  log_group        = "/ferry/shop/production"
}

app "api" {
  image  = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/api"
  active = 7
  scale  = 3
  cpu    = 512
  memory = 1024
  port   = 9000
  track  = "prod"

  # id = digest; reviewed line by line in pull requests
  releases = {
    6 = "sha256:6b7f1c2c8e1d7b1f4a4ec8f0d9a5a4d0c4b0c1a2e3f405162738495a6b7c8d9e"
    7 = "sha256:7c8e2d3f4a5b6c7d8e9f00112233445566778899aabbccddeeff001122334455"
  }

  env = {
    LOG_LEVEL        = "info"
    API_TOKEN_ISSUER = "https://auth.example.com"
  }

  sensitive_env = ["API_TOKEN_ISSUER"]

  # references only, never values
  secrets = {
    DATABASE_URL = "arn:aws:ssm:eu-central-1:123456789012:parameter/shop/db-url"
    STRIPE_KEY   = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:shop/stripe-AbCdEf"
  }

  health {
    command             = ["CMD-SHELL", "curl -f http://localhost:9000/health || exit 1"]
    path                = "/health"
    interval            = "10s"
    timeout             = "3s"
    healthy_threshold   = 2
    unhealthy_threshold = 3
    grace_period        = "30s"
  }

  deploy {
    max_surge    = "50%"
    min_healthy  = "100%"
    timeout      = "10m"
    drain        = "15s"
    stop_timeout = "30s"
  }

  # run with the new release before it is activated
  release_task "migrate" {
    command = ["bin/migrate", "up"]
    timeout = "15m"
  }

  release_task "warm-cache" {
    command = ["bin/warm-cache"]
    timeout = "2m"
    run_on  = "every_deploy"
  }
}

app "web" {
  image        = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web"
  active       = 3
  scale        = 2
  cpu          = 256
  memory       = 512
  command      = ["bundle", "exec", "puma", "-p", "${PORT}"]
  port         = 8080
  depends_on   = ["api"]
  target_group = "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/shop-web/0123456789abcdef"

  releases = {
    2 = "sha256:b652b6fe388c8320d02dfcdcace99b59fcda6773a11f89d444174c9d70e3ab79"
    3 = "sha256:2b51cdaabcdc9c35b36e998ec81d2ed8507def0e4709a4d5003414e727e67fa9"
  }

  env = {
    RAILS_ENV = "production"
  }

  secrets = {
    SECRET_KEY_BASE = "arn:aws:ssm:eu-central-1:123456789012:parameter/shop/secret-key-base"
  }

  health {
    path = "/up"
  }

  deploy {
    max_surge   = "100%"
    min_healthy = "100%"
    timeout     = "5m"
  }
}

# Declared, not deployed yet: no active release.
app "worker" {
  image      = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/worker"
  scale      = 1
  command    = ["bin/worker"]
  depends_on = ["api"]

  releases = {
    1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
  }
}
